"""Maps from a parameter box ``[0, 1]^d`` onto the physical domain or one of its boundary parts.

A quadrature rule is built on the parameter box and pushed through a map; the map returns the
physical points and the Jacobian factor (volume or area element) by which the parameter-space
weights are multiplied, plus the outward unit normal for boundary parts.  Maps are stateless and
work in whatever dtype and device the parameters come in.
"""

from __future__ import annotations

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
        lower = params.new_tensor(self.lower)
        extent = params.new_tensor(self.upper) - lower
        points = lower + params * extent
        return MappedPoints(points, extent.prod().expand(params.shape[0]))


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
        lower = params.new_tensor(self.lower)
        extent = params.new_tensor(self.upper) - lower
        tangential = [a for a in range(3) if a != self.axis]
        points = lower.expand(params.shape[0], 3).clone()
        points[:, tangential] += params * extent[tangential]
        if self.side > 0:
            points[:, self.axis] += extent[self.axis]
        normal = torch.zeros(3, dtype=params.dtype, device=params.device)
        normal[self.axis] = float(self.side)
        area = extent[tangential].prod()
        return MappedPoints(points, area.expand(params.shape[0]), normal.expand(params.shape[0], 3))
