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
        key = (device, dtype)
        if key not in self._tables:
            nodes, weights = gauss_legendre_unit(self.order)
            cells = torch.tensor(self.cells, dtype=dtype, device=device)
            self._tables[key] = (
                torch.tensor(nodes, dtype=dtype, device=device),
                torch.tensor(weights, dtype=dtype, device=device),
                cells,
            )
        return self._tables[key]

    def parameters(self, index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        nodes, weights, cells = self._table(index.device, dtype)
        d = len(self.cells)
        per_cell = self.order**d
        cell = unravel(index // per_cell, self.cells)
        local = unravel(index % per_cell, (self.order,) * d)
        params = torch.stack([(c.to(dtype) + nodes[j]) for c, j in zip(cell, local)], dim=1) / cells
        weight = weights[local[0]]
        for j in local[1:]:
            weight = weight * weights[j]
        return params, weight / cells.prod()
