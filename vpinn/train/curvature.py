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
(unbiased), as ``A^T A`` from the rows ``A_i = (c w_i)^(1/2) Lambda_i^(1/2) V_i^T J_i`` of the
eigen-decomposition ``H_i = V_i Lambda_i V_i^T``, keeping only the curved directions (rank
``H``: 3 rows per point for Poisson, 6 for elasticity, where the rotations of ``grad u`` store
no energy), which is half the work of the 12-row product for elasticity.

A boundary term that reads ``grad u`` (Nitsche's weak Dirichlet or clamp term) adds its own
sample's ``J^T H J`` to ``G``.  Its density's Hessian is indefinite, so its form names a positive
semi-definite stand-in (:attr:`~vpinn.physics.base.Form.curvature`, the penalty part
``gamma |u - g|^2 / 2``: one row ``(c w_i gamma)^(1/2) J_u`` per point); the gradient and the
line search keep the exact energy.

Only one chunk's Jacobians ``J`` (``chunk x q x P`` numbers) exist at a time: the pieces keep
``z``, ``de/dz`` and ``H`` per point (``q + q^2`` numbers), and the one pass over the sample
computes ``J`` chunk by chunk, adding it into ``G`` (or ``A``) and into the sample's gradient
``sum_i c w_i J_i^T de/dz_i``, all that the line search of
:mod:`vpinn.train.optimizers.engd` needs of ``J``.

With several ranks each holds the pieces of its own part of the sample; ``G`` and the gradient
are summed and the rows of ``A`` gathered over the ranks, so every rank solves the same system.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vpinn.distributed import LOCAL, Group
from vpinn.physics.base import Form
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor


def density_derivatives(form: Form, batch: PointBatch, u: Tensor, grad_u: Tensor) -> tuple[Tensor, Tensor]:
    """``de/dz`` (b, q) of ``form``'s density and the Hessian (b, q, q) its Gram matrix takes, at
    ``z = (u, grad u)`` flattened as ``[u_0 .. u_{m-1}, du_0/dx, du_0/dy, du_0/dz, du_1/dx, ...]``
    (q = 4m): ``d^2e/dz^2``, or the Hessian of the form's ``curvature`` where it names a positive
    semi-definite stand-in (Nitsche's boundary term: its penalty part)."""
    slope, hessian = _derivatives(form.density, batch, u, grad_u)
    if form.curvature is not None:
        hessian = _derivatives(form.curvature, batch, u, grad_u)[1]
    return slope, hessian


def _derivatives(density_of, batch: PointBatch, u: Tensor, grad_u: Tensor) -> tuple[Tensor, Tensor]:
    """``de/dz`` (b, q) and ``d^2e/dz^2`` (b, q, q) of the density ``density_of`` at ``z``."""
    b, m = u.shape
    with torch.enable_grad():
        z = torch.cat([u, grad_u.reshape(b, 3 * m)], dim=1).detach().requires_grad_(True)
        density = density_of(batch, z[:, :m], z[:, m:].view(b, m, 3))
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
    ``c w_i`` (b,), ``z`` (b, q), ``de/dz`` (b, q) and ``H`` (b, q, q)."""

    batch: PointBatch
    weights: Tensor
    z: Tensor
    slope: Tensor
    hessian: Tensor


@dataclass
class JacobianSums:
    """What one pass over a sample's Jacobians gives (each summed over the ranks):
    ``matrix``, the Gram matrix ``G`` (P, P) or its square root ``A`` (R, P, ``A^T A = G``), and
    ``slope_gradient``, ``sum_i c w_i J_i^T de/dz_i`` (P,), the gradient of the sample's energy."""

    matrix: Tensor
    slope_gradient: Tensor


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
        pieces.append(CurvatureChunk(part, factor * part.weights, z, slope, hessian))
    return pieces


def active_rows(pieces: list[CurvatureChunk], group: Group = LOCAL) -> Tensor:
    """Indices of the entries of ``z`` on which the density's Hessian acts (e.g. only ``grad u``
    for Poisson) at any point of any rank: an upper bound on the rows per point of ``A``."""
    curvature = group.max_(torch.stack([p.hessian.abs().amax(dim=(0, 1)) for p in pieces]).amax(0))
    return torch.nonzero(curvature > 0)[:, 0]


def jacobian_sums(pieces: list[CurvatureChunk], trial, *, factored: bool = False, group: Group = LOCAL,
                  gram_only: list[CurvatureChunk] = ()) -> JacobianSums:
    """One pass over the sample: each chunk's ``J`` (b, q, P) from ``trial.parameter_jacobian``
    goes into the sample's gradient and into the rows of ``A`` (the chunks of ``gram_only``, a
    boundary term's sample whose energy the line search sums exactly, into ``A`` only): per point
    ``(c w_i)^(1/2) Lambda^(1/2) V^T J_i`` from the eigenvalues of ``H_i`` (negative ones, which a
    convex energy has not, clipped to 0), leaving out the eigenvectors on which no point of the
    chunk has curvature (Poisson: ``u`` itself, so 3 rows per point; elasticity: ``u`` and the 3
    rotations of ``grad u``, so 6 rows instead of 12); then ``J`` is dropped.  ``G = A^T A`` is
    accumulated chunk by chunk, or, with ``factored``, ``A`` itself is returned.  Over the ranks
    ``G`` and the gradient are summed and ``A``'s rows gathered (zero rows, which change neither
    ``G`` nor the Woodbury solve, pad ranks with fewer points)."""
    matrix, blocks, slope_gradient = None, [], None
    for k, p in enumerate([*pieces, *gram_only]):
        jacobian = trial.parameter_jacobian(p.batch.points)
        if k < len(pieces):
            part_gradient = torch.einsum("bq,bqp->p", p.weights[:, None] * p.slope, jacobian)
            slope_gradient = part_gradient if slope_gradient is None else slope_gradient + part_gradient
        values, vectors = torch.linalg.eigh(p.hessian)
        values = (p.weights[:, None] * values).clamp(min=0)
        curved = values.amax(0) > 1e-12 * values.max()  # the eigen-directions some point curves
        roots = values[:, curved].sqrt()[:, :, None] * vectors[:, :, curved].transpose(1, 2)
        block = torch.bmm(roots, jacobian).reshape(-1, jacobian.shape[-1])
        if factored:
            blocks.append(block)
        else:
            matrix = block.T @ block if matrix is None else matrix.addmm_(block.T, block)
    group.sum_(slope_gradient)
    if factored:
        return JacobianSums(group.gather_rows(torch.cat(blocks)), slope_gradient)
    group.sum_(matrix)
    return JacobianSums(0.5 * (matrix + matrix.T), slope_gradient)


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
