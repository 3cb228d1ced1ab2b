"""Nitsche's method: Dirichlet or clamp data ``u = g`` imposed weakly, by a boundary term.

Instead of an ansatz ``u = g + d*N`` that meets the data exactly (and needs a distance
function ``d`` of the faces), the trial function is left free on the faces ``Gamma_D`` and the
energy gets the symmetric Nitsche term

    E_D(u) = - integral_Gamma_D (T(u) . (u - g)) ds  +  (gamma / 2) integral_Gamma_D |u - g|^2 ds,

with ``T(u)`` the conormal derivative of the PDE (Poisson: the flux ``k du/dn``, (b, 1);
elasticity: the traction ``sigma(u) n``, (b, 3)).  The Euler-Lagrange equation of the total
energy is the PDE with ``u = g`` on ``Gamma_D`` and nothing else: the consistency term
``-T(u).(u - g)`` cancels the flux that integration by parts leaves on ``Gamma_D``, so the
exact solution is a stationary point for every ``gamma`` (an energy minimum when ``gamma`` is
large enough for the energy to be coercive on the trial space: ``gamma > C k`` with ``C`` the
constant of the trace inequality ``||T(v)||_Gamma^2 <= C k ||v||_E^2`` there, units 1/length).
At ``u*`` the term vanishes, so ``E(u*)`` is the same reference energy as with the exact ansatz.

The density's Hessian in ``(u, grad u)`` is indefinite (Poisson: ``[[gamma, -k n^T], [-k n, 0]]``),
and a Gram matrix built from it would not be positive semi-definite.  The form's ``curvature``
is the penalty part alone, ``gamma |u - g|^2 / 2`` (Hessian ``gamma I`` on ``u``): with the
volume's Hessian it makes the Gram matrix of ``integral k grad v . grad w + gamma integral_Gamma_D v w``,
a norm on the trial space equivalent to Nitsche's energy norm whenever the energy is coercive,
so ENGD's steps are preconditioned by a norm of the right problem, while its gradient (and its
line search) stay those of the exact Nitsche energy.
"""

from __future__ import annotations

from typing import Callable

import torch

from vpinn.physics.base import Form, Load
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor
#: (points (b, 3), grad u (b, m, 3), outward normals (b, 3)) -> the conormal derivative T(u) (b, m)
Conormal = Callable[[Tensor, Tensor, Tensor], Tensor]


def nitsche_form(name: str, faces: tuple[str, ...], data: Load, conormal: Conormal, penalty: float) -> Form:
    """The Nitsche term (see the module docstring) of the data ``g = data(batch)`` (b, m) on
    ``faces`` with penalty ``gamma = penalty`` (units of the modulus per length)."""

    def penalty_part(gap: Tensor) -> Tensor:
        return 0.5 * penalty * (gap * gap).sum(1)

    def curvature(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        return penalty_part(u - data(batch))

    def density(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        gap = u - data(batch)
        return penalty_part(gap) - (conormal(batch.points, grad_u, batch.normals) * gap).sum(1)

    return Form(name, density, needs_gradient=True, faces=faces, curvature=curvature)
