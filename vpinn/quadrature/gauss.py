"""Composite Gauss-Legendre rules on a grid of cells, computed from the point index on demand.

With ``q`` nodes per direction in each of ``n_1 x ... x n_d`` cells the rule has
``N = prod(n_k) * q^d`` points and integrates polynomials of degree ``2q - 1`` per direction
exactly on each cell; for smooth integrands the error falls as ``h^(2q)``.  Point ``i`` is
cell ``i // q^d`` (row-major over the cell grid) and local node ``i % q^d``; nothing of size N
is ever stored.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vpinn.geometry.maps import ParameterMap
from vpinn.quadrature.base import MappedRule


def gauss_legendre_unit(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1] (float64, weights sum to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    return (nodes + 1) / 2, weights / 2


def unravel(index: torch.Tensor, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Row-major multi-index of flat ``index`` in an array of ``shape`` (one tensor per axis)."""
    out = []
    for n in reversed(shape):
        out.append(index % n)
        index = index // n
    return out[::-1]


class GaussRule(MappedRule):
    """Composite Gauss-Legendre rule with ``order`` nodes per direction on ``cells`` cells."""

    def __init__(self, mapping: ParameterMap, cells: tuple[int, ...], order: int):
        if len(cells) != mapping.dim:
            raise ValueError(f"{len(cells)} cell counts for a {mapping.dim}-dimensional parameter box")
        self.cells, self.order = tuple(cells), order
        super().__init__(mapping, math.prod(cells) * order ** len(cells))
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _table(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-local-node parameter offsets (q^d, d) and weights (q^d,), and the cell counts (d,).

        Tabulating the q^d local nodes once turns a batch's node lookup into two gathers.
        """
        key = (device, dtype)
        if key not in self._tables:
            nodes, weights = gauss_legendre_unit(self.order)
            d = len(self.cells)
            local = np.stack(np.meshgrid(*[np.arange(self.order)] * d, indexing="ij"), -1).reshape(-1, d)
            self._tables[key] = (
                torch.tensor(nodes[local], dtype=dtype, device=device),
                torch.tensor(weights[local].prod(axis=1) / math.prod(self.cells), dtype=dtype, device=device),
                torch.tensor(self.cells, dtype=dtype, device=device),
            )
        return self._tables[key]

    def parameters(self, index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        offsets, weights, cells = self._table(index.device, dtype)
        per_cell = self.order ** len(self.cells)
        cell, local = index // per_cell, index % per_cell
        corner = torch.stack(unravel(cell, self.cells), dim=1).to(dtype)
        return (corner + offsets[local]) / cells, weights[local]
