"""Isotropic small-strain linear elasticity in its energy form (the deep energy method).

For a displacement ``u`` (3 components, length units) the strain is
``eps = (grad u + grad u^T)/2`` and the stress ``sigma = lam tr(eps) I + 2 mu eps`` (units of the
Lamé parameters).  The solution minimises, over displacements meeting the clamp and roller
conditions,

    E(u) = integral_Omega ( sigma(u):eps(u) / 2 - f.u ) dx  -  integral_Gamma_t t.u ds,

with body force ``f`` and prescribed traction ``t = sigma n`` on the traction faces; faces
without a condition are traction-free.  ``E(u) - E(u*) = (1/2) ||u - u*||_E^2`` with the energy
norm ``||v||_E^2 = integral sigma(v):eps(v)``.

Conditions are imposed exactly, component by component: ``u_k = g_k + d_k N_k`` where ``d_k``
vanishes on the clamped faces and on the roller planes normal to axis ``k`` (a roller fixes
only the normal component, ``u.n = 0``; on an oblique plane ``d N`` is projected instead,
:mod:`vpinn.fields.projection`), and ``g`` is the clamp data extended into the domain by its
own formula.  ``body_force = "auto"`` and traction ``"auto"`` are built once,
symbolically and exactly, from the exact displacement: ``f = -div sigma(u*)``, ``t = sigma(u*) n``.
A clamp may instead be imposed weakly, by Nitsche's boundary term (:mod:`vpinn.physics.nitsche`).

As ``nu -> 1/2`` the energy's volumetric part ``lam (div u)^2 / 2`` dominates and a
displacement-only discretisation locks (the problem loader warns above ``nu = 0.45``).
"""

from __future__ import annotations

from typing import Sequence

import torch

from vpinn.expressions import Expression
from vpinn.physics.base import ExactSolution, Form, Load, Physics, evaluate_vector, load_form, normal_components
from vpinn.physics.nitsche import Conormal, nitsche_form
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor
#: Voigt order of the six components of a symmetric tensor on export (ParaView's order)
VOIGT = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))


def strain(grad_u: Tensor) -> Tensor:
    """``eps = (grad u + grad u^T)/2`` (b, 3, 3) from ``grad_u[:, k, j] = du_k/dx_j`` (b, 3, 3)."""
    return 0.5 * (grad_u + grad_u.transpose(1, 2))


def stress(grad_u: Tensor, lam: float, mu: float) -> Tensor:
    """``sigma = lam tr(eps) I + 2 mu eps`` (b, 3, 3)."""
    eps = strain(grad_u)
    trace = eps.diagonal(dim1=1, dim2=2).sum(1)
    return 2 * mu * eps + lam * trace[:, None, None] * torch.eye(3, dtype=grad_u.dtype, device=grad_u.device)


def strain_energy_density(grad_u: Tensor, lam: float, mu: float) -> Tensor:
    """``sigma:eps / 2 = lam tr(eps)^2 / 2 + mu eps:eps`` (b,)."""
    eps = strain(grad_u)
    trace = eps.diagonal(dim1=1, dim2=2).sum(1)
    return 0.5 * lam * trace * trace + mu * (eps * eps).sum(dim=(1, 2))


def von_mises(sigma: Tensor) -> Tensor:
    """``sqrt(3/2 s:s)`` (b,) with the deviatoric stress ``s = sigma - tr(sigma) I / 3``."""
    trace = sigma.diagonal(dim1=1, dim2=2).sum(1)
    deviator = sigma - (trace / 3)[:, None, None] * torch.eye(3, dtype=sigma.dtype, device=sigma.device)
    return torch.sqrt(1.5 * (deviator * deviator).sum(dim=(1, 2)))


def voigt(tensor: Tensor) -> Tensor:
    """The six components (b, 6) of a symmetric tensor (b, 3, 3): xx, yy, zz, xy, yz, xz."""
    return torch.stack([tensor[:, i, j] for i, j in VOIGT], dim=1)


def stress_expressions(u: Sequence[Expression], lam: float, mu: float) -> list[list[Expression]]:
    """``sigma_ij(u)`` as exact expressions (3 x 3) of a displacement given by expressions."""
    grad = [component.gradient() for component in u]  # grad[k][j] = du_k/dx_j
    divergence = grad[0][0] + grad[1][1] + grad[2][2]
    return [[mu * (grad[i][j] + grad[j][i]) + (lam * divergence if i == j else 0.0) for j in range(3)] for i in range(3)]


def body_force_expressions(u: Sequence[Expression], lam: float, mu: float) -> list[Expression]:
    """``f_i = -sum_j d sigma_ij / dx_j``: the body force in equilibrium with displacement ``u``."""
    sigma = stress_expressions(u, lam, mu)
    return [-(sigma[i][0].derivative(0) + sigma[i][1].derivative(1) + sigma[i][2].derivative(2)) for i in range(3)]


def energy_form(lam: float, mu: float, body_force: Sequence[Expression] | None) -> Form:
    """The volume form ``sigma:eps / 2 - f.u`` (no body-force term if ``body_force`` is None)."""

    def density(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        energy = strain_energy_density(grad_u, lam, mu)
        return energy if body_force is None else energy - (evaluate_vector(body_force, batch.points) * u).sum(1)

    return Form("energy", density)


def given_traction(traction: Sequence[Expression]) -> Load:
    """A traction ``t`` given as three expressions, as a load (b, 3)."""
    return lambda batch: evaluate_vector(traction, batch.points)


def exact_traction(exact: Sequence[Expression], lam: float, mu: float) -> Load:
    """The traction ``sigma(u*) n`` of the exact displacement, as a load (b, 3)."""
    sigma = stress_expressions(exact, lam, mu)
    return lambda batch: normal_components(sigma, batch)


def conormal(lam: float, mu: float) -> Conormal:
    """The traction ``sigma(u) n`` (b, 3) from points (b, 3), grad u (b, 3, 3) and normals (b, 3)."""
    return lambda x, grad_u, normals: (stress(grad_u, lam, mu) @ normals[:, :, None])[:, :, 0]


def physics(lam: float, mu: float, body_force: Sequence[Expression] | None,
            tractions: Sequence[tuple[str, tuple[str, ...], Load]] = (),
            exact: Sequence[Expression] | None = None,
            weak: Sequence[tuple[str, tuple[str, ...], Load, float]] = ()) -> Physics:
    """The elasticity :class:`Physics` (see the module docstring): Lamé parameters, body force
    (None: zero), tractions as (name, faces, load), the exact displacement if known, and the
    clamps imposed by Nitsche's method as (name, faces, data, penalty)."""
    traction = conormal(lam, mu)

    def energy_norm(x: Tensor, grad_error: Tensor) -> Tensor:
        return 2 * strain_energy_density(grad_error, lam, mu)

    def derived(x: Tensor, u: Tensor, grad_u: Tensor) -> dict[str, Tensor]:
        sigma = stress(grad_u, lam, mu)
        return {"displacement": u, "strain": voigt(strain(grad_u)), "stress": voigt(sigma), "von_mises": von_mises(sigma)}

    def frame_fields(u: Tensor, grad_u: Tensor, frame: Tensor, axes: tuple[str, str, str]) -> dict[str, Tensor]:
        sigma = frame @ stress(grad_u, lam, mu) @ frame.transpose(1, 2)
        first, second = axes[0], axes[1]
        return {f"u_{first}": (frame[:, 0] * u).sum(1),
                f"sigma_{first}{first}": sigma[:, 0, 0], f"sigma_{second}{second}": sigma[:, 1, 1]}

    def boundary_fields(x: Tensor, u: Tensor, grad_u: Tensor, normals: Tensor) -> dict[str, Tensor]:
        return {"traction": traction(x, grad_u, normals)}

    loads = tuple(load_form(name, faces, load) for name, faces, load in tractions)
    nitsche = tuple(nitsche_form(name, faces, data, traction, penalty) for name, faces, data, penalty in weak)
    return Physics(energy_form(lam, mu, body_force), loads, energy_norm, derived,
                   ExactSolution(exact) if exact is not None else None, "displacement", frame_fields, boundary_fields,
                   nitsche)
