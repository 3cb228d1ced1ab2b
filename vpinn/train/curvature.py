"""Curvature of the energy for second-order steps: density Hessians, Gram matrices estimated on
samples of a rule, and damped solves.

For an energy ``E(theta) = sum_i w_i e(x_i, z_i)`` with ``z_i = (u, grad u)(x_i)`` (q = 4m
numbers per point), the Gauss-Newton (energy natural gradient) matrix is

    G = sum_i w_i J_i^T H_i J_i,   J_i = dz_i/dtheta (q, P),   H_i = d^2 e / dz^2 (q, q).

For the quadratic energies of Poisson and linear elasticity ``H`` is exact and constant in ``z``
(``k I`` on ``grad u``; the elastic tensor), so ``G`` is the Gram matrix of the PDE's bilinear
form in the tangent space of the network (Müller & Zeinhofer's energy natural gradient).  ``H``
is obtained from the density itself by automatic differentiation, so no PDE needs Gram code of
its own.  ``G`` is estimated on a sample ``I`` of the rule as ``(N/n) sum_{i in I} ...``
(unbiased), accumulated over chunks; the Jacobians ``J`` of all its points (``n x q x P``
numbers) are kept for the line search of :mod:`vpinn.train.optimizers.engd`.

With several ranks each holds the pieces of its own part of the sample; the active rows are
maximised, ``G`` summed, and the rows of ``A`` (``A^T A = G``) gathered over the ranks, so every
rank solves the same system.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vpinn.distributed import LOCAL, Group
from vpinn.physics.base import Form
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor


def density_derivatives(form: Form, batch: PointBatch, u: Tensor, grad_u: Tensor) -> tuple[Tensor, Tensor]:
    """``de/dz`` (b, q) and ``d^2e/dz^2`` (b, q, q) of ``form``'s density at ``z = (u, grad u)``,
    flattened as ``[u_0 .. u_{m-1}, du_0/dx, du_0/dy, du_0/dz, du_1/dx, ...]`` (q = 4m)."""
    b, m = u.shape
    with torch.enable_grad():
        z = torch.cat([u, grad_u.reshape(b, 3 * m)], dim=1).detach().requires_grad_(True)
        density = form.density(batch, z[:, :m], z[:, m:].view(b, m, 3))
        (slope,) = torch.autograd.grad(density.sum(), z, create_graph=True)
        if not slope.requires_grad:  # a density linear in z: no curvature
            return slope.detach(), slope.new_zeros(b, 4 * m, 4 * m)
        rows = [torch.autograd.grad(slope[:, r].sum(), z, retain_graph=True, allow_unused=True)[0]
                for r in range(4 * m)]
    zeros = torch.zeros_like(z)
    return slope.detach(), torch.stack([zeros if row is None else row.detach() for row in rows], dim=1)


@dataclass
class CurvatureChunk:
    """The pieces of one chunk of a curvature sample: the points, their estimator weights
    ``c w_i`` (b,), ``z`` (b, q), ``de/dz`` (b, q), ``H`` (b, q, q) and ``J`` (b, q, P)."""

    batch: PointBatch
    weights: Tensor
    z: Tensor
    slope: Tensor
    hessian: Tensor
    jacobian: Tensor


def curvature_chunks(form: Form, trial, batch: PointBatch, factor: float, chunk: int) -> list[CurvatureChunk]:
    """The curvature pieces of the sampled points ``batch`` (estimator factor ``factor``), in
    chunks of ``chunk`` points."""
    pieces = []
    for start in range(0, batch.points.shape[0], chunk):
        part = PointBatch(*(t[start:start + chunk] if t is not None else None
                            for t in (batch.points, batch.weights, batch.normals)))
        with torch.no_grad():
            u, grad_u = trial(part.points)
        slope, hessian = density_derivatives(form, part, u, grad_u)
        z = torch.cat([u, grad_u.reshape(u.shape[0], -1)], dim=1)
        pieces.append(CurvatureChunk(part, factor * part.weights, z, slope, hessian, trial.parameter_jacobian(part.points)))
    return pieces


def active_rows(pieces: list[CurvatureChunk], group: Group = LOCAL) -> Tensor:
    """Indices of the entries of ``z`` on which the density's Hessian acts (e.g. only ``grad u``
    for Poisson) at any point of any rank: the other rows of ``J`` add nothing to ``G`` and are
    left out of it."""
    curvature = group.max_(torch.stack([p.hessian.abs().amax(dim=(0, 1)) for p in pieces]).amax(0))
    return torch.nonzero(curvature > 0)[:, 0]


def gram_matrix(pieces: list[CurvatureChunk], rows: Tensor, group: Group = LOCAL) -> Tensor:
    """``G = sum_i c w_i J_i^T H_i J_i`` (P, P) over the sample (all ranks' parts), restricted
    to ``rows`` of ``z``."""
    total = None
    for p in pieces:
        jacobian = p.jacobian[:, rows]
        weighted = (p.weights[:, None, None] * p.hessian[:, rows][:, :, rows]) @ jacobian
        part = jacobian.reshape(-1, jacobian.shape[-1]).T @ weighted.reshape(-1, jacobian.shape[-1])
        total = part if total is None else total + part
    group.sum_(total)
    return 0.5 * (total + total.T)


def square_root_rows(pieces: list[CurvatureChunk], rows: Tensor, group: Group = LOCAL) -> Tensor:
    """``A`` (R, P) with ``A^T A = G``: per point ``(c w_i)^(1/2) Lambda^(1/2) V^T J_i`` from the
    eigenvalues of ``H_i`` (negative ones, which a convex energy has not, clipped to 0), the
    rows of all ranks stacked (zero rows, which change neither ``G`` nor the Woodbury solve,
    pad ranks with fewer points)."""
    blocks = []
    for p in pieces:
        values, vectors = torch.linalg.eigh(p.hessian[:, rows][:, :, rows])
        scale = (p.weights[:, None] * values.clamp(min=0)).sqrt()
        blocks.append((scale[:, :, None] * vectors.transpose(1, 2)) @ p.jacobian[:, rows])
    stacked = torch.cat(blocks)
    return group.gather_rows(stacked.reshape(-1, stacked.shape[-1]))


def solve_dense(gram: Tensor, gradient: Tensor, damping: float) -> Tensor:
    """``(G + damping I)^-1 g`` by Cholesky; the damping grows tenfold until ``G + damping I``
    factorises (round-off can make a Gram matrix of condition 1e20 indefinite)."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    for _ in range(12):
        factor, info = torch.linalg.cholesky_ex(gram + damping * eye)
        if int(info) == 0:
            return torch.cholesky_solve(gradient[:, None], factor)[:, 0]
        damping = max(10 * damping, 1e-14 * float(gram.diagonal().mean()))  # from 0 too
    raise FloatingPointError("the damped Gram matrix does not factorise")


def solve_woodbury(rows: Tensor, gradient: Tensor, damping: float) -> Tensor:
    """``(A^T A + damping I)^-1 g`` through the small (R, R) system when A has R < P rows:
    ``(g - A^T (A A^T + damping I)^-1 A g) / damping``."""
    small = rows @ rows.T
    small.diagonal().add_(damping)
    return (gradient - rows.T @ torch.linalg.solve(small, rows @ gradient)) / damping
