"""What a domain provides to the rest of vpinn, and the profile lines some domains offer.

A domain is described by maps of the unit cube onto its volume and of the unit square onto each
named face (for quadrature and export grids) -- or, for a mesh
(:class:`~vpinn.geometry.mesh_domain.MeshDomain`), by its tetrahedra and tagged triangles, on which
assembly builds simplex rules instead -- a bounding box (for the network's input scaling),
distance-like functions that vanish on chosen faces (for hard boundary conditions) and,
optionally, natural coordinates as extra network inputs and a profile line for 1D plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from vpinn.geometry.maps import ParameterMap

Tensor = torch.Tensor
#: points (b, 3) -> values (b,) and gradients (b, 3); zero on the chosen faces, maximum about 1
DistanceFunction = Callable[[Tensor], tuple[Tensor, Tensor]]


class InputFeatures(Protocol):
    """``count`` extra network inputs of the points (a domain's natural coordinates): values
    (b, count) in about [-1, 1] and their Jacobian (b, count, 3) with respect to ``x``."""

    count: int

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values and Jacobian at points ``x`` (b, 3)."""


@dataclass(frozen=True)
class Profile:
    """A line through the domain with a local orthonormal frame at each of its points.

    ``coordinate`` (n,) is the position along the line (named ``label``, e.g. the radius ``r``),
    ``points`` (n, 3) the physical points (float64), ``frame`` (n, 3, 3) the unit vectors of the
    local frame as rows, named ``axes`` (e.g. ``("r", "theta", "phi")``).  Physics express their
    fields in this frame for 1D plots of computed against exact values.
    """

    label: str
    coordinate: Tensor
    points: Tensor
    frame: Tensor
    axes: tuple[str, str, str]


class Domain(Protocol):
    """The interface of the mapped domains (see the module docstring); a mesh domain has the same
    members except the maps, and a ``mesh`` instead."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    @property
    def volume(self) -> float:
        """The exact volume."""

    def volume_map(self) -> ParameterMap:
        """Map of the unit cube onto the domain."""

    def face_map(self, face: str) -> ParameterMap:
        """Map of the unit square onto the named face, with outward normals."""

    def distance(self, faces: tuple[str, ...]) -> DistanceFunction:
        """A smooth function vanishing exactly on ``faces``, positive inside, maximum about 1."""

    def input_features(self) -> InputFeatures | None:
        """The domain's natural coordinates beyond x, y, z as extra network inputs, or None."""

    def profile(self, points: int) -> Profile | None:
        """A natural line for 1D plots (``points`` points along it), or None."""
