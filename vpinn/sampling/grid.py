"""A rule's points as a lattice, and tiles of it: what stratified and quasi-random sampling see.

A composite Gauss rule with ``order`` nodes per direction on ``c_1 x ... x c_d`` cells is a lattice
of ``L_a = c_a * order`` node positions per axis (node ``g`` on axis a lies in cell ``g // order``);
nearby lattice positions are nearby points.  Any other rule (Sobol points, concatenated faces) is a
1-D lattice of its indices.  :class:`RuleGrid` maps lattice coordinates to rule indices, and
:class:`Tiling` cuts the lattice into ``M`` equal boxes (strata), each ``n = N / M`` points, with
a map from ``(stratum, local position)`` to the rule index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vpinn.quadrature.base import QuadratureRule
from vpinn.quadrature.gauss import GaussRule, unravel


@dataclass(frozen=True)
class RuleGrid:
    """The lattice ``shape`` (L_1, ..., L_d) of a rule; ``order`` nodes per cell and axis (1: no cells)."""

    shape: tuple[int, ...]
    order: int = 1

    @staticmethod
    def of(rule: QuadratureRule) -> "RuleGrid":
        if isinstance(rule, GaussRule):
            return RuleGrid(tuple(c * rule.order for c in rule.cells), rule.order)
        return RuleGrid((rule.size,))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def index(self, coordinates: torch.Tensor) -> torch.Tensor:
        """Rule indices (b,) of lattice ``coordinates`` (b, d) int64 (cell-major, as GaussRule counts)."""
        q, d = self.order, len(self.shape)
        cell = torch.zeros_like(coordinates[:, 0])
        local = torch.zeros_like(coordinates[:, 0])
        for axis, length in enumerate(self.shape):
            cell = cell * (length // q) + coordinates[:, axis] // q
            local = local * q + coordinates[:, axis] % q
        return cell * q**d + local


def _divisor_near(length: int, target: float) -> int:
    """The divisor of ``length`` closest to ``target`` in ratio (ties: the smaller)."""
    divisors = [k for k in range(1, length + 1) if length % k == 0] if length < 10**6 else [1, length]
    return min(divisors, key=lambda k: (abs(math.log(k / target)), k))


class Tiling:
    """``count`` equal boxes of a :class:`RuleGrid`: about ``target`` of them, as cube-like as the
    lattice's divisors allow (strata counts per axis divide the lattice lengths)."""

    def __init__(self, grid: RuleGrid, target: int):
        per_axis, remaining = [], float(max(1, target))
        for axis, length in enumerate(grid.shape):
            want = remaining ** (1 / (len(grid.shape) - axis))
            k = _divisor_near(length, want)
            per_axis.append(k)
            remaining = max(1.0, remaining / k)
        self.grid, self.strata_shape = grid, tuple(per_axis)
        self.tile = tuple(length // k for length, k in zip(grid.shape, per_axis))
        self.count, self.size = math.prod(per_axis), math.prod(self.tile)

    def index(self, stratum: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Rule indices of position ``local`` (in ``[0, size)``, row-major in the tile) of ``stratum``
        (in ``[0, count)``); both int64 of one shape."""
        corner = unravel(stratum.reshape(-1), self.strata_shape)
        offset = unravel(local.reshape(-1), self.tile)
        coordinates = torch.stack([c * t + o for c, t, o in zip(corner, self.tile, offset)], dim=1)
        return self.grid.index(coordinates).reshape(stratum.shape)

    def stratum_of(self, index: torch.Tensor) -> torch.Tensor:
        """The stratum of rule indices (the inverse direction of :meth:`index`, for diagnostics)."""
        q, d = self.grid.order, len(self.grid.shape)
        cell, local = index // q**d, index % q**d
        cells = unravel(cell, tuple(length // q for length in self.grid.shape))
        nodes = unravel(local, (q,) * d)
        stratum = torch.zeros_like(index)
        for axis in range(d):
            coordinate = cells[axis] * q + nodes[axis]
            stratum = stratum * self.strata_shape[axis] + coordinate // self.tile[axis]
        return stratum
