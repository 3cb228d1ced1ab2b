"""Poisson's equation ``-div(k grad u) = f`` in its energy (Deep Ritz) form.

The solution minimises, over functions equal to the Dirichlet data,

    E(u) = integral_Omega ( k |grad u|^2 / 2 - f u ) dx  -  integral_Gamma_N h u ds,

with ``h = k du/dn`` the Neumann flux.  At the minimiser ``E(u*) = -(1/2) integral k |grad u*|^2``
plus Neumann terms, and ``E(u) - E(u*) = (1/2) ||u - u*||_E^2`` with the energy norm
``||v||_E^2 = integral k |grad v|^2``.
"""

from __future__ import annotations

import torch

from vpinn.calculus import flux_divergence
from vpinn.fields.ansatz import HardDirichletAnsatz
from vpinn.fields.network import Field
from vpinn.geometry.base import Domain
from vpinn.physics.base import (ExactSolution, Physics, Term, boundary_load_term, lifts_of, normal_components,
                                volume_term)
from vpinn.problem.spec import ProblemSpec
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor


def energy_density(u: Tensor, grad_u: Tensor, source: Tensor, coefficient: Tensor) -> Tensor:
    """``k |grad u|^2 / 2 - f u`` (b,) from u (b,), grad u (b, 3), f (b,), k (b,)."""
    return 0.5 * coefficient * (grad_u * grad_u).sum(dim=1) - source * u


def build(spec: ProblemSpec, domain: Domain, field: Field) -> Physics:
    """The Poisson :class:`Physics` of a problem spec."""
    pde = spec.pde
    exact = ExactSolution([spec.exact.u]) if spec.exact is not None else None
    coefficient = pde.coefficient
    source = -flux_divergence(coefficient, spec.exact.u) if pde.source == "auto" else pde.source

    dirichlet = [bc for bc in spec.bc if bc.type == "dirichlet"]
    faces = tuple(f for bc in dirichlet for f in bc.faces_on(spec.domain))
    solution = HardDirichletAnsatz(field, [domain.distance(faces) if faces else None], lifts_of(spec, dirichlet))

    def energy(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        x = batch.points
        return energy_density(u[:, 0], grad_u[:, 0], source(x), coefficient(x))

    terms = [volume_term(spec, domain, energy)]
    for i, bc in enumerate(spec.bc):
        if bc.type == "neumann":
            terms.append(_neumann_term(f"flux{i}", bc, spec, domain))

    def energy_norm(x: Tensor, grad_error: Tensor) -> Tensor:
        return coefficient(x) * (grad_error * grad_error).sum(dim=(1, 2))

    def derived(x: Tensor, u: Tensor, grad_u: Tensor) -> dict[str, Tensor]:
        return {"u": u[:, 0], "grad_u": grad_u[:, 0]}

    def frame_fields(u: Tensor, grad_u: Tensor, frame: Tensor, axes: tuple[str, str, str]) -> dict[str, Tensor]:
        return {"u": u[:, 0], f"du/d{axes[0]}": (frame[:, 0] * grad_u[:, 0]).sum(1)}

    return Physics(solution, terms, energy_norm, derived, exact, frame_fields=frame_fields)


def _neumann_term(name: str, bc, spec: ProblemSpec, domain: Domain) -> Term:
    """``-integral of h u ds`` over the faces of a Neumann condition; ``"auto"``: h = k grad u*.n."""
    if bc.value == "auto":
        flux_vector = [spec.pde.coefficient * du for du in spec.exact.u.gradient()]  # k grad u*
        flux = lambda batch: normal_components([flux_vector], batch)  # noqa: E731
    else:
        flux = lambda batch: bc.value(batch.points)[:, None]  # noqa: E731

    return boundary_load_term(name, spec, domain, bc.faces_on(spec.domain), flux)
