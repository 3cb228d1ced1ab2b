"""Maps from a parameter box ``[0, 1]^d`` onto the physical domain or one of its boundary parts.

A quadrature rule is built on the parameter box and pushed through a map; the map returns the
physical points and the Jacobian factor (volume or area element) by which the parameter-space
weights are multiplied, plus the outward unit normal for boundary parts.  Maps are stateless and
work in whatever dtype and device the parameters come in.
"""

from __future__ import annotations

import math

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MappedPoints:
    """Points of a map: ``points`` (b, 3), ``jacobian`` (b,) and, on boundaries, ``normals`` (b, 3)."""

    points: torch.Tensor
    jacobian: torch.Tensor
    normals: torch.Tensor | None = None


class ParameterMap(ABC):
    """``[0, 1]^dim -> R^3`` with its Jacobian factor."""

    dim: int

    @abstractmethod
    def __call__(self, params: torch.Tensor) -> MappedPoints:
        """Map parameters (b, dim) to physical points."""


@dataclass(frozen=True)
class BoxVolumeMap(ParameterMap):
    """The affine map of the unit cube onto the box ``lower <= x <= upper``."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    dim: int = 3

    def __call__(self, params: torch.Tensor) -> MappedPoints:
        # Python scalars, not tensors made from the tuples: no host-to-device copy per batch.
        extent = [hi - lo for lo, hi in zip(self.lower, self.upper)]
        points = torch.stack([lo + params[:, k] * e for k, (lo, e) in enumerate(zip(self.lower, extent))], dim=1)
        return MappedPoints(points, params.new_full((params.shape[0],), math.prod(extent)))


@dataclass(frozen=True)
class BoxFaceMap(ParameterMap):
    """The affine map of the unit square onto the face ``x[axis] = lower or upper[axis]``.

    The two parameters run along the other two axes in increasing order; ``side`` is -1 for the
    lower face (outward normal -e_axis) and +1 for the upper face.
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    axis: int
    side: int
    dim: int = 2

    def __call__(self, params: torch.Tensor) -> MappedPoints:
        count = params.shape[0]
        tangential = [a for a in range(3) if a != self.axis]
        columns = [None, None, None]
        for j, a in enumerate(tangential):
            columns[a] = self.lower[a] + params[:, j] * (self.upper[a] - self.lower[a])
        columns[self.axis] = params.new_full((count,), self.upper[self.axis] if self.side > 0 else self.lower[self.axis])
        normals = params.new_zeros(count, 3)
        normals[:, self.axis] = float(self.side)
        area = math.prod(self.upper[a] - self.lower[a] for a in tangential)
        return MappedPoints(torch.stack(columns, dim=1), params.new_full((count,), area), normals)
