"""The quadrature-rule interface: N points and weights, produced from indices on demand.

A rule approximates ``integral f  ~  S = sum_{i<N} w_i f(x_i)``.  Rules are *lazy*: they store a
few small tables, and :meth:`QuadratureRule.take` computes the points and weights of any index
tensor on the index's device, so a rule of 1e9 points costs no memory and a minibatch costs
O(b).  Full sums run over :meth:`QuadratureRule.chunks` at the memory of one chunk.
"""

from __future__ import annotations

import itertools

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from vpinn.geometry.maps import MappedPoints, ParameterMap


@dataclass(frozen=True)
class PointBatch:
    """Points (b, 3), weights (b,) and, for boundary rules, outward normals (b, 3)."""

    points: torch.Tensor
    weights: torch.Tensor
    normals: torch.Tensor | None = None


class QuadratureRule(ABC):
    """A rule of :attr:`size` points on a domain or boundary part."""

    size: int

    @abstractmethod
    def take(self, index: torch.Tensor, dtype: torch.dtype) -> PointBatch:
        """Points and weights of the rule's points ``index`` (b,) int64, on ``index.device``."""

    def chunks(self, chunk: int, device: torch.device | str) -> Iterator[torch.Tensor]:
        """Consecutive index ranges covering the rule, ``chunk`` points each (the last shorter)."""
        for start in range(0, self.size, chunk):
            yield torch.arange(start, min(start + chunk, self.size), device=device)

    def total(self, fn, chunk: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """``sum_i w_i fn(x_i)`` over the whole rule, accumulated in float64 over chunks.

        ``fn`` maps a :class:`PointBatch` to values (b,) or (b, k); no autograd graph is kept.
        """
        return self.total_over(fn, self.chunks(chunk, device), dtype)

    def total_over(self, fn, indices: Iterable[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """``sum_i w_i fn(x_i)`` over the index ranges ``indices`` (e.g. one rank's part of the
        rule), accumulated in float64; ``indices`` must not be empty."""
        result = None
        with torch.no_grad():
            for index in indices:
                batch = self.take(index, dtype)
                values = fn(batch)
                weights = batch.weights.reshape(-1, *([1] * (values.dim() - 1)))
                part = (weights * values).sum(0, dtype=torch.float64)
                result = part if result is None else result + part
        return result


class MappedRule(QuadratureRule):
    """A rule on the parameter box ``[0, 1]^d`` pushed through a :class:`ParameterMap`.

    Subclasses implement :meth:`parameters`: parameter points (b, d) and parameter-space
    weights (b,) of the given indices; the map supplies physical points and Jacobians.
    """

    def __init__(self, mapping: ParameterMap, size: int):
        self.mapping = mapping
        self.size = int(size)

    @abstractmethod
    def parameters(self, index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameter points (b, d) in [0, 1]^d and their weights (b,), summing to 1 over the rule."""

    def take(self, index: torch.Tensor, dtype: torch.dtype) -> PointBatch:
        params, weights = self.parameters(index, dtype)
        mapped: MappedPoints = self.mapping(params)
        return PointBatch(mapped.points, weights * mapped.jacobian, mapped.normals)


class ConcatRule(QuadratureRule):
    """Several rules back to back (e.g. the faces of one boundary condition), still lazy."""

    def __init__(self, parts: Sequence[QuadratureRule]):
        if not parts:
            raise ValueError("ConcatRule needs at least one part")
        self.parts = list(parts)
        sizes = [p.size for p in self.parts]
        self.size = sum(sizes)
        self._starts = [0, *itertools.accumulate(sizes)][:-1]

    def take(self, index: torch.Tensor, dtype: torch.dtype) -> PointBatch:
        """Each part is evaluated at every index (clamped into its range) and the owning part's
        values are kept with ``torch.where``: no boolean indexing, so no device-to-host sync on
        CUDA, at the price of ``len(parts)`` cheap map evaluations."""
        first = self.parts[0].take((index - self._starts[0]).clamp(0, self.parts[0].size - 1), dtype)
        points, weights, normals = first.points, first.weights, first.normals
        for start, part in zip(self._starts[1:], self.parts[1:]):
            batch = part.take((index - start).clamp(0, part.size - 1), dtype)
            mine = index >= start
            points = torch.where(mine[:, None], batch.points, points)
            weights = torch.where(mine, batch.weights, weights)
            if normals is not None:
                normals = torch.where(mine[:, None], batch.normals, normals)
        return PointBatch(points, weights, normals)
