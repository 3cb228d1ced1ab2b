"""Poisson's equation ``-div(k grad u) = f`` in its energy (Deep Ritz) form.

The solution minimises, over functions equal to the Dirichlet data,

    E(u) = integral_Omega ( k |grad u|^2 / 2 - f u ) dx  -  integral_Gamma_N h u ds,

with ``h = k du/dn`` the Neumann flux.  At the minimiser ``E(u*) = -(1/2) integral k |grad u*|^2``
plus Neumann terms, and ``E(u) - E(u*) = (1/2) ||u - u*||_E^2`` with the energy norm
``||v||_E^2 = integral k |grad v|^2``.  Dirichlet data is imposed by the ansatz, or weakly by
Nitsche's boundary term (:mod:`vpinn.physics.nitsche`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from vpinn.expressions import Expression
from vpinn.physics.base import ExactSolution, Form, Load, Physics, load_form, normal_components
from vpinn.physics.nitsche import Conormal, nitsche_form
from vpinn.quadrature.base import PointBatch

Tensor = torch.Tensor


def energy_density(u: Tensor, grad_u: Tensor, source: Tensor, coefficient: Tensor) -> Tensor:
    """``k |grad u|^2 / 2 - f u`` (b,) from u (b,), grad u (b, 3), f (b,), k (b,)."""
    return 0.5 * coefficient * (grad_u * grad_u).sum(dim=1) - source * u


def energy_form(source: Expression, coefficient: Expression) -> Form:
    """The volume form ``k |grad u|^2 / 2 - f u``."""

    def density(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        x = batch.points
        return energy_density(u[:, 0], grad_u[:, 0], source(x), coefficient(x))

    return Form("energy", density)


def given_flux(flux: Expression) -> Load:
    """A Neumann flux ``h`` given as an expression, as a load (b, 1)."""
    return lambda batch: flux(batch.points)[:, None]


def exact_flux(coefficient: Expression, exact: Expression) -> Load:
    """The flux ``h = k grad u* . n`` of the exact solution, as a load (b, 1)."""
    flux_vector = [coefficient * du for du in exact.gradient()]
    return lambda batch: normal_components([flux_vector], batch)


def conormal(coefficient: Expression) -> Conormal:
    """The flux ``k grad u . n`` (b, 1) from points (b, 3), grad u (b, 1, 3) and normals (b, 3)."""
    return lambda x, grad_u, normals: coefficient(x)[:, None] * (grad_u * normals[:, None, :]).sum(2)


def physics(source: Expression, coefficient: Expression, fluxes: Sequence[tuple[str, tuple[str, ...], Load]] = (),
            exact: Expression | None = None, weak: Sequence[tuple[str, tuple[str, ...], Load, float]] = ()) -> Physics:
    """The Poisson :class:`Physics`: source ``f``, coefficient ``k``, Neumann ``fluxes`` as
    (name, faces, load), the exact solution if known, and the Dirichlet data imposed by
    Nitsche's method as (name, faces, data, penalty)."""
    flux = conormal(coefficient)

    def energy_norm(x: Tensor, grad_error: Tensor) -> Tensor:
        return coefficient(x) * (grad_error * grad_error).sum(dim=(1, 2))

    def derived(x: Tensor, u: Tensor, grad_u: Tensor) -> dict[str, Tensor]:
        return {"u": u[:, 0], "grad_u": grad_u[:, 0]}

    def frame_fields(u: Tensor, grad_u: Tensor, frame: Tensor, axes: tuple[str, str, str]) -> dict[str, Tensor]:
        return {"u": u[:, 0], f"du/d{axes[0]}": (frame[:, 0] * grad_u[:, 0]).sum(1)}

    def boundary_fields(x: Tensor, u: Tensor, grad_u: Tensor, normals: Tensor) -> dict[str, Tensor]:
        return {"flux": flux(x, grad_u, normals)[:, 0]}

    loads = tuple(load_form(name, faces, load) for name, faces, load in fluxes)
    nitsche = tuple(nitsche_form(name, faces, data, flux, penalty) for name, faces, data, penalty in weak)
    return Physics(energy_form(source, coefficient), loads, energy_norm, derived,
                   ExactSolution([exact]) if exact is not None else None, "u", frame_fields, boundary_fields, nitsche)
