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
only the normal component, ``u.n = 0``), and ``g`` is the clamp data extended into the domain
by its own formula.  ``body_force = "auto"`` and traction ``"auto"`` are built once,
symbolically and exactly, from the exact displacement: ``f = -div sigma(u*)``, ``t = sigma(u*) n``.

As ``nu -> 1/2`` the energy's volumetric part ``lam (div u)^2 / 2`` dominates and a
displacement-only discretisation locks; above ``nu = 0.45`` a :class:`~vpinn.errors.VpinnWarning`
says so.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from vpinn.errors import SpecError, VpinnWarning
from vpinn.expressions import Expression
from vpinn.fields.ansatz import HardDirichletAnsatz
from vpinn.fields.network import Field
from vpinn.geometry.base import Domain
from vpinn.physics.base import (ExactSolution, Physics, boundary_load_term, evaluate_vector, is_zero, lifts_of,
                                normal_components, volume_term)
from vpinn.problem.spec import ProblemSpec
from vpinn.quadrature import GaussRule
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor
#: nu above which the warning about volumetric locking is given
LOCKING_NU = 0.45
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


def build(spec: ProblemSpec, domain: Domain, field: Field) -> Physics:
    """The elasticity :class:`Physics` of a problem spec (see the module docstring)."""
    pde = spec.pde
    lam, mu = pde.lame
    if pde.poisson_ratio > LOCKING_NU:
        warnings.warn(
            f"pde.nu = {pde.poisson_ratio:g} > {LOCKING_NU}: the displacement energy locks as nu -> 0.5 "
            "(lam (div u)^2/2 dominates); expect slow training and poor stresses", VpinnWarning, stacklevel=2)
    exact = ExactSolution(spec.exact.components) if spec.exact is not None else None
    body = body_force_expressions(spec.exact.components, lam, mu) if pde.body_force == "auto" else pde.body_force
    body = None if is_zero(body) else body

    def energy(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        density = strain_energy_density(grad_u, lam, mu)
        return density if body is None else density - (evaluate_vector(body, batch.points) * u).sum(1)

    terms = [volume_term(spec, domain, energy)]
    for i, bc in enumerate(spec.bc):
        if bc.type == "traction" and (bc.value == "auto" or not is_zero(bc.value)):
            terms.append(boundary_load_term(f"traction{i}", spec, domain, bc.faces_on(spec.domain),
                                            _traction(bc.value, spec, lam, mu)))

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

    return Physics(_ansatz(spec, domain, field), terms, energy_norm, derived, exact, "displacement", frame_fields)


def _traction(value, spec: ProblemSpec, lam: float, mu: float):
    """``t(batch)`` (b, 3): the given expressions, or ``sigma(u*) n`` for ``"auto"``."""
    if value != "auto":
        return lambda batch: evaluate_vector(value, batch.points)
    sigma = stress_expressions(spec.exact.components, lam, mu)
    return lambda batch: normal_components(sigma, batch)


def _ansatz(spec: ProblemSpec, domain: Domain, field: Field) -> HardDirichletAnsatz:
    """``u_k = g_k + d_k N_k``: ``d_k`` vanishes on the clamped faces and on the roller planes
    normal to axis k; ``g`` is the clamp data (shared by all clamp entries, checked on loading)."""
    clamps = [(i, bc) for i, bc in enumerate(spec.bc) if bc.type == "clamp"]
    clamped = tuple(f for _, bc in clamps for f in bc.faces_on(spec.domain))
    rollers = tuple(f for bc in spec.bc if bc.type == "roller" for f in bc.faces_on(spec.domain))
    distances = []
    for axis in range(3):
        faces = clamped + tuple(f for f in rollers if spec.domain.planes[f] == axis)
        distances.append(domain.distance(faces) if faces else None)
    lifts = lifts_of(spec, [bc for _, bc in clamps])
    for face in rollers:
        _check_lift_vanishes(lifts[spec.domain.planes[face]], domain, face, clamps[0][0] if clamps else 0, spec)
    return HardDirichletAnsatz(field, distances, lifts)


def _check_lift_vanishes(lift: Expression | None, domain: Domain, face: str, index: int, spec: ProblemSpec) -> None:
    """The clamp data's normal component must be 0 on a roller plane: there ``u_k = g_k``."""
    if lift is None:
        return
    batch = GaussRule(domain.face_map(face), (4, 4), 3).take(torch.arange(144), torch.float64)
    largest = float(lift(batch.points).abs().max())
    if largest > 1e-12 * spec.model.output_scale:
        raise SpecError(
            f"bc[{index}].value",
            f"the clamp data's component normal to the roller face '{face}' is not 0 there (up to {largest:.3g}); "
            f"it is extended into the domain as the lift g of u = g + d*N, so write it to vanish on '{face}'",
        )
