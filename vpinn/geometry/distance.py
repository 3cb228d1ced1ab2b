"""Smooth approximate distance functions (ADFs) to parts of a mesh's boundary, for hard BCs.

A part that is a *supporting plane* (the whole domain lies behind it) has the exact distance
``(offset - normal . x) / depth``: linear, zero exactly on the plane, 1 at the farthest point.
Any other part, given as triangles, gets the R-equivalence of the distances ``phi_i`` to its
triangles (Sukumar & Srivastava 2022, eq. for the union of boundary pieces):

    phi(x) = (sum_i phi_i(x)^(-m))^(-1/m),

which is zero exactly on every triangle, positive elsewhere, smooth away from the triangles,
and equal to the Euclidean distance to first order at the boundary (the nearest triangle
dominates the sum).  Far from the boundary it is flattened (many triangles contribute), so it
is normalised, like the box's function, to a maximum of about 1 over sample points of the
domain.  A union of parts is the product of their factors, normalised the same way.

Evaluation is chunked (``pairs`` point-triangle pairs at a time: all triangles against a few
hundred points, small enough to stay in cache) on the points' device, under ``no_grad`` (the
function does not depend on the network's parameters; its gradient is in closed form), with a
running rescaling by the smallest distance so that nothing overflows in float32 and the value
is finite (about 1e-30 times the normalisation) on a triangle itself.  The cost is
O(triangles) per point (:func:`cost_per_point` measures it); a repeated call on the same points
(ENGD's whole-rule sums, its line search, the error's rule) is answered from a bounded
:class:`~vpinn.geometry.memo.PointMemo`.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from vpinn.geometry.memo import PointMemo

Tensor = torch.Tensor
#: exponent m of the R-equivalence: larger is closer to the (non-smooth) minimum distance
EXPONENT = 4
#: point-triangle pairs evaluated at once (memory: ~25 numbers per pair; 2^16 is the fastest of
#: 2^13..2^20 on a 2-core EPYC, float32 and float64)
PAIRS = 1 << 16
#: smallest distance used in the sums (a point on a triangle)
TINY = 1e-30


class TriangleDistance:
    """The R-equivalence of the distances to triangles (see the module docstring), not
    normalised: ``phi ~ distance`` near the triangles.

    Per triangle, with unit normal ``n`` and edges ``k = 0, 1, 2`` (from corner ``p_k``, unit
    direction ``e_k``, length ``L_k``, in-plane outward normal ``m_k = e_k x n``), seven
    coordinates of a point are affine in it and come from one matrix product with a table: the
    height ``h = n.(x - p_0)`` and, per edge, ``tau_k = e_k.(x - p_k)`` and
    ``sigma_k = m_k.(x - p_k)``.  The projection's offset from edge k's segment is
    ``sigma_k m_k + (tau_k - clamp(tau_k, 0, L_k)) e_k``; the projection is inside the triangle
    when every ``sigma_k <= 0``, else its nearest point is on the nearest segment.  So

        phi_i^2 = h^2 + [outside] min_k (sigma_k^2 + (tau_k - clamp(tau_k, 0, L_k))^2),
        x - c_i = h n + [outside] (sigma_k m_k + (tau_k - clamp(tau_k, 0, L_k)) e_k)

    (c_i the closest point, k the nearest edge), about 40 element-wise operations per
    point-triangle pair plus matrix products; the gradient's sum over triangles is matrix
    products too.  The in-plane coordinates are differences of nearby points (no difference of
    large squared norms), so float32 keeps its relative accuracy near the boundary.

    Repeated calls on the same points are answered from a :class:`~vpinn.geometry.memo.PointMemo`.
    """

    def __init__(self, corners: np.ndarray, exponent: int = EXPONENT, pairs: int = PAIRS,
                 memo: PointMemo | None = None):
        corners = np.asarray(corners, np.float64)  # (t, 3, 3)
        if exponent % 2:
            raise ValueError(f"the exponent must be even, not {exponent}")
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        starts = corners  # edge k runs from corner k to corner k + 1
        edges = np.roll(corners, -1, axis=1) - starts  # (t, 3 edges, 3)
        length = np.linalg.norm(edges, axis=2)
        direction = edges / length[..., None]
        outward = np.cross(direction, normal[:, None, :])
        # x -> (h, tau_0..2, sigma_0..2) per triangle: (x, 1) @ affine, affine (4, 7, t)
        linear = np.concatenate([normal[:, None], direction, outward], axis=1)  # (t, 7, 3)
        origins = np.concatenate([corners[:, :1], starts, starts], axis=1)  # (t, 7, 3)
        affine = np.concatenate([linear, -(linear * origins).sum(2, keepdims=True)], axis=2).transpose(2, 1, 0)
        self._host = {"affine": affine, "length": length.T, "normal": normal, "outward": outward.transpose(1, 0, 2),
                      "direction": direction.transpose(1, 0, 2)}
        self.count, self.exponent, self.pairs = len(corners), exponent, pairs
        self.memo = PointMemo() if memo is None else memo
        self._tables: dict[tuple, list[dict[str, Tensor]]] = {}

    def _table(self, device: torch.device, dtype: torch.dtype) -> list[dict[str, Tensor]]:
        """Per chunk of at most ``pairs`` triangles, contiguous tables with every quantity's
        triangles innermost (so each is a (points, triangles) block): ``affine`` (4, 7t),
        ``length`` (3, t), ``normal`` (t, 3), ``outward`` and ``direction`` (3t, 3), edge-major."""
        key = (device, dtype)
        if key not in self._tables:
            size, parts = min(self.count, self.pairs), []
            for start in range(0, self.count, size):
                part = slice(start, min(start + size, self.count))
                host = {"affine": self._host["affine"][:, :, part].reshape(4, -1), "length": self._host["length"][:, part],
                        "normal": self._host["normal"][part], "outward": self._host["outward"][:, part].reshape(-1, 3),
                        "direction": self._host["direction"][:, part].reshape(-1, 3)}
                parts.append({k: torch.as_tensor(np.ascontiguousarray(v), dtype=dtype, device=device) for k, v in host.items()})
            self._tables[key] = parts
        return self._tables[key]

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b,) and gradients (b, 3) at ``points`` (b, 3)."""
        return self.memo(points, self.evaluate)

    def evaluate(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`__call__` without the memo: chunks of points against chunks of triangles,
        ``pairs`` point-triangle pairs at once."""
        table = self._table(points.device, points.dtype)
        rows = max(1, self.pairs // self.count)
        values, grads = [], []
        with torch.no_grad():
            for start in range(0, len(points), rows):
                value, grad = self._rows(points[start:start + rows], table)
                values.append(value)
                grads.append(grad)
        return torch.cat(values), torch.cat(grads)

    @staticmethod
    def _pairs(x: Tensor, part: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """For points ``x`` (p, 3) and the t triangles of ``part``: squared distances (p, t),
        heights ``h`` (p, t), whether the projection is outside (p, t), the nearest edge (p, t)
        and the edge coordinates ``sigma_k`` and ``tau_k - clamp(tau_k, 0, L_k)`` (p, 3, t)."""
        extended = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        coordinates = (extended @ part["affine"]).view(len(x), 7, -1)
        h, tau, sigma = coordinates[:, 0], coordinates[:, 1:4], coordinates[:, 4:7]
        along = torch.minimum(tau.clamp_min(0), part["length"])
        along = torch.sub(tau, along, out=along)
        segment = sigma * sigma
        segment.addcmul_(along, along)
        nearest, edge = segment.min(dim=1)
        outside = sigma.amax(dim=1) > 0
        squared = torch.addcmul(torch.where(outside, nearest, 0.0), h, h).clamp_min_(TINY * TINY)
        return squared, h, outside, edge, sigma, along

    def _rows(self, x: Tensor, table: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """``phi = r S^(-1/m)``, ``grad phi = r S^(-1/m - 1) H`` with the running smallest
        distance ``r``, ``S = sum (r/phi_i)^m`` and ``H = sum (r/phi_i)^m (x - c_i)/phi_i^2``."""
        half = self.exponent // 2
        r2 = s = h_sum = None
        for part in table:
            squared, h, outside, edge, sigma, along = self._pairs(x, part)
            nearest = squared.min(dim=1).values
            if r2 is None:
                r2, s, h_sum = nearest, torch.zeros_like(nearest), torch.zeros_like(x)
            else:
                smaller = torch.minimum(r2, nearest)
                rescale = (smaller / r2) ** half
                s, h_sum, r2 = s * rescale, h_sum * rescale[:, None], smaller
            ratio = torch.div(r2[:, None], squared) ** half
            coefficient = ratio / squared
            # sum_i coefficient_i (x - c_i): the height part, then the nearest edge's offset
            h_sum = h_sum.addmm_(coefficient * h, part["normal"])
            weight = torch.where(outside, coefficient, 0.0)[:, None]
            pick = torch.zeros_like(sigma).scatter_(1, edge[:, None], weight)
            h_sum = h_sum.addmm_((pick * sigma).view(len(x), -1), part["outward"])
            h_sum = h_sum.addmm_((pick * along).view(len(x), -1), part["direction"])
            s = s + ratio.sum(1)
        r = r2.sqrt()
        return r * s ** (-1 / self.exponent), (r * s ** (-1 / self.exponent - 1))[:, None] * h_sum


class PlaneDistance:
    """``(offset - normal . x) / depth``: the exact distance to a supporting plane, scaled to 1
    at the domain's farthest point (a plane normal to an axis reads that coordinate only)."""

    def __init__(self, normal: Sequence[float], offset: float, depth: float):
        self.normal, self.offset, self.depth = tuple(float(n) for n in normal), float(offset), float(depth)
        self.axis = next((k for k, n in enumerate(self.normal) if abs(n) == 1.0), None)

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        n = self.normal
        if self.axis is not None:
            value = (self.offset - n[self.axis] * points[:, self.axis]) / self.depth
            grad = torch.zeros_like(points)
            grad[:, self.axis] = -n[self.axis] / self.depth
            return value, grad
        value = (self.offset - (points[:, 0] * n[0] + points[:, 1] * n[1] + points[:, 2] * n[2])) / self.depth
        grad = torch.stack([torch.full_like(value, -c / self.depth) for c in n], dim=1)  # no host-to-device copy
        return value, grad


class ProductDistance:
    """``scale * prod_k phi_k``: zero on every part, ``scale`` making the maximum over the
    domain's sample points 1."""

    def __init__(self, factors: Sequence, samples: np.ndarray):
        self.factors, self.scale = list(factors), 1.0
        value, _ = self(torch.as_tensor(samples, dtype=torch.float64))
        self.scale = 1.0 / float(value.max())

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b,) and gradients (b, 3) at ``points`` (b, 3) (product rule)."""
        value, grad = self.factors[0](points)
        for factor in self.factors[1:]:
            v, g = factor(points)
            value, grad = value * v, grad * v[:, None] + value[:, None] * g
        return self.scale * value, self.scale * grad


def cost_per_point(distance, points: Tensor, repeats: int = 3) -> float:
    """Median seconds per point of evaluating ``distance`` at ``points`` (b, 3); pass
    :meth:`TriangleDistance.evaluate` to time the computation rather than its memo."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        distance(points)
        if points.device.type == "cuda":
            torch.cuda.synchronize(points.device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] / len(points)
