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

Evaluation is chunked over points and triangles (``pairs`` point-triangle pairs at a time) on
the points' device, with a running rescaling by the smallest distance so that nothing overflows
in float32 and the value is finite (about 1e-30 times the normalisation) on a triangle itself.
The cost is O(triangles) per point: :func:`cost_per_point` measures it.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

Tensor = torch.Tensor
#: exponent m of the R-equivalence: larger is closer to the (non-smooth) minimum distance
EXPONENT = 4
#: point-triangle pairs evaluated at once (memory: ~40 numbers per pair)
PAIRS = 1 << 20
#: smallest distance used in the sums (a point on a triangle)
TINY = 1e-30


class TriangleDistance:
    """The R-equivalence of the distances to triangles (see the module docstring), not
    normalised: ``phi ~ distance`` near the triangles.

    Per point-triangle pair only scalars are formed: with ``e0 = b - a``, ``e1 = c - a`` and the
    unit normal ``n``, the products ``(x - a).e0``, ``(x - a).e1``, ``(x - a).n`` and
    ``|x - a|^2`` come from one matrix product of the points with a per-triangle table, the
    closest point is ``a + alpha e0 + beta e1`` (the projection if it falls inside the triangle,
    else the nearest point of the nearest edge), and the gradient's sum over triangles is again
    matrix products.  Squared distances avoid square roots (m is even).
    """

    def __init__(self, corners: np.ndarray, exponent: int = EXPONENT, pairs: int = PAIRS):
        corners = np.asarray(corners, np.float64)  # (t, 3, 3)
        if exponent % 2:
            raise ValueError(f"the exponent must be even, not {exponent}")
        a, e0, e1 = corners[:, 0], corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        normal = np.cross(e0, e1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
        # x -> ((x-a).e0, (x-a).e1, (x-a).n): a linear map per triangle plus constants
        self._host = {"linear": np.stack([e0, e1, normal], axis=1),
                      "constant": np.stack([-(a * e0).sum(1), -(a * e1).sum(1), -(a * normal).sum(1)], 1),
                      "gram": np.stack([d00, d01, d11, d00 * d11 - d01 * d01, d00 - 2 * d01 + d11], 1),
                      "a": a, "e0": e0, "e1": e1}
        self.count, self.exponent, self.pairs = len(corners), exponent, pairs
        self._tables: dict[tuple, dict[str, Tensor]] = {}

    def _table(self, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        key = (device, dtype)
        if key not in self._tables:
            table = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self._host.items()}
            table["linear"] = table["linear"].reshape(-1, 3).T.contiguous()  # (3, 3t)
            self._tables[key] = table
        return self._tables[key]

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b,) and gradients (b, 3) at ``points`` (b, 3)."""
        table = self._table(points.device, points.dtype)
        triangles = max(1, min(self.count, self.pairs // max(1, len(points))))
        rows = max(1, self.pairs // triangles)
        values, grads = [], []
        with torch.no_grad():
            for start in range(0, len(points), rows):
                value, grad = self._rows(points[start:start + rows], table, triangles)
                values.append(value)
                grads.append(grad)
        return torch.cat(values), torch.cat(grads)

    def _pairs(self, x: Tensor, table: dict[str, Tensor], part: slice) -> tuple[Tensor, Tensor, Tensor]:
        """Squared distances (p, t) of points ``x`` to the triangles ``part`` and the local
        coordinates ``alpha, beta`` (p, t) of the closest points.

        The squared distance is ``h^2`` (height above the plane) plus the in-plane squared
        distance from the projection ``(v, w)`` to ``(alpha, beta)``: no difference of large
        squared norms, so float32 keeps its relative accuracy near the boundary."""
        t = part.stop - part.start
        linear = table["linear"][:, 3 * part.start:3 * part.stop]
        products = (x @ linear).view(len(x), t, 3) + table["constant"][part]
        s, u, h = products.unbind(2)
        d00, d01, d11, determinant, e2 = table["gram"][part].unbind(1)
        v, w = (d11 * s - d01 * u) / determinant, (d00 * u - d01 * s) / determinant
        inside = (v >= 0) & (w >= 0) & (v + w <= 1)
        ab, ac = (s / d00).clamp(0, 1), (u / d11).clamp(0, 1)
        bc = ((u - s - d01 + d00) / e2).clamp(0, 1)
        best = alpha = beta = None
        for a, b in ((ab, torch.zeros_like(ab)), (torch.zeros_like(ac), ac), (1 - bc, bc)):
            da, db = v - a, w - b
            planar = da * da * d00 + 2 * da * db * d01 + db * db * d11
            if best is None:
                best, alpha, beta = planar, a, b
            else:
                closer = planar < best
                best, alpha, beta = torch.where(closer, planar, best), torch.where(closer, a, alpha), torch.where(closer, b, beta)
        squared = h * h + torch.where(inside, torch.zeros_like(best), best)
        return squared.clamp_min(TINY * TINY), torch.where(inside, v, alpha), torch.where(inside, w, beta)

    def _rows(self, x: Tensor, table: dict[str, Tensor], triangles: int) -> tuple[Tensor, Tensor]:
        """``phi = r S^(-1/m)``, ``grad phi = r S^(-1/m - 1) H`` with the running smallest
        distance ``r``, ``S = sum (r/phi_i)^m`` and ``H = sum (r/phi_i)^m (x - c_i)/phi_i^2``."""
        half = self.exponent // 2
        r2 = s = h = None
        for start in range(0, self.count, triangles):
            part = slice(start, min(start + triangles, self.count))
            squared, alpha, beta = self._pairs(x, table, part)
            nearest = squared.min(dim=1).values
            if r2 is None:
                r2, s, h = nearest, torch.zeros_like(nearest), torch.zeros_like(x)
            else:
                smaller = torch.minimum(r2, nearest)
                rescale = (smaller / r2) ** half
                s, h, r2 = s * rescale, h * rescale[:, None], smaller
            ratio = (r2[:, None] / squared) ** half
            coefficient = ratio / squared
            # sum_i coefficient_i (x - a_i - alpha_i e0_i - beta_i e1_i), as matrix products
            h = h + (coefficient.sum(1, keepdim=True) * x - coefficient @ table["a"][part]
                     - (coefficient * alpha) @ table["e0"][part] - (coefficient * beta) @ table["e1"][part])
            s = s + ratio.sum(1)
        r = r2.sqrt()
        return r * s ** (-1 / self.exponent), (r * s ** (-1 / self.exponent - 1))[:, None] * h


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
    """Median seconds per point of evaluating ``distance`` at ``points`` (b, 3)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        distance(points)
        if points.device.type == "cuda":
            torch.cuda.synchronize(points.device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] / len(points)
