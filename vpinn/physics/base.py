"""What a PDE module provides: forms (integrands of the energy), error norms, derived fields.

A PDE is described to the rest of vpinn by a :class:`Physics`: the energy's volume
:class:`Form`, its boundary loads (forms on named faces), the exact solution if known, the
density of the energy norm, the derived fields written on export and, optionally, the fields in
a local frame that profile plots show.  A form is a plain function of the points and of
``(u, grad u)`` that says whether it needs ``grad u``; the same form gives the loss of the
network and, applied to the exact solution, the reference energy ``E(u*)``.

Physics knows nothing of quadrature or batch sizes: :mod:`vpinn.assemble` pairs each form with
a rule and a batch size into a :class:`Term`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

import torch

from vpinn.calculus import value_and_gradient
from vpinn.expressions import Expression
from vpinn.quadrature.base import PointBatch, QuadratureRule

Tensor = torch.Tensor
#: (points, u (b, m), grad u (b, m, 3) or None) -> integrand (b,)
Density = Callable[[PointBatch, Tensor, Tensor | None], Tensor]
#: (u (b, m), grad u (b, m, 3), frame (b, 3, 3) of unit row vectors, the frame's axis names)
#: -> named scalar fields (b,) in that frame
FrameFields = Callable[[Tensor, Tensor, Tensor, tuple[str, str, str]], dict[str, Tensor]]
#: (points, u (b, m), grad u (b, m, 3), outward normals (b, 3)) -> named fields on a boundary, e.g.
#: the flux k grad u . n or the traction sigma n
BoundaryFields = Callable[[Tensor, Tensor, Tensor, Tensor], dict[str, Tensor]]
#: a prescribed boundary load at a batch of boundary points (with normals) -> (b, m)
Load = Callable[[PointBatch], Tensor]


class Trial(Protocol):
    """A trial function: the hard-BC ansatz around the network, or an exact solution."""

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b, m) and spatial Jacobian (b, m, 3) at ``x`` (b, 3)."""

    def value(self, x: Tensor) -> Tensor:
        """Values (b, m) only."""


@dataclass(frozen=True)
class Form:
    """One integrand of the energy, on the volume (``faces`` None) or on boundary faces.

    ``needs_gradient`` False means the density reads ``u`` only (``grad u`` is passed as None),
    so that no spatial Jacobian is computed for it.  ``curvature``, where given, is the density
    whose Hessian in ``(u, grad u)`` stands for this one's in Gram matrices
    (:mod:`vpinn.train.curvature`): a positive semi-definite stand-in for a form whose own
    Hessian is indefinite (Nitsche's boundary term, :mod:`vpinn.physics.nitsche`).
    """

    name: str
    density: Density
    needs_gradient: bool = True
    faces: tuple[str, ...] | None = None
    curvature: Density | None = None


def load_form(name: str, faces: tuple[str, ...], load: Load) -> Form:
    """The energy term ``-integral over faces of load . u ds`` of a prescribed boundary load:
    the Neumann flux ``h`` (m = 1) or the traction ``t`` (m = 3)."""

    def density(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        return -(load(batch) * u).sum(dim=1)

    return Form(name, density, needs_gradient=False, faces=faces)


@dataclass(frozen=True)
class ExactSolution:
    """A closed-form solution, one expression per component."""

    components: Sequence[Expression]

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b, m) and Jacobian (b, m, 3) at ``x`` (b, 3)."""
        parts = [value_and_gradient(c, x) for c in self.components]
        return torch.stack([p[0] for p in parts], dim=1), torch.stack([p[1] for p in parts], dim=1)

    def value(self, x: Tensor) -> Tensor:
        return evaluate_vector(self.components, x)


@dataclass(frozen=True)
class Physics:
    """Everything the trainer, evaluator and exporter need to know about one PDE.

    ``energy_norm(points, grad_error)`` is the density of the squared energy norm (b,);
    ``derived(points, u, grad_u)`` returns named fields (b,) or (b, k) to export, among them
    ``primary`` (the solution itself, compared with the exact one on export);
    ``frame_fields`` gives the scalar fields that profile plots show along a domain's
    :class:`~vpinn.geometry.base.Profile` (e.g. ``u_r``, ``sigma_rr`` along a radius);
    ``boundary_fields`` the fields a boundary shows (the flux, the traction) given outward normals;
    ``weak`` the Nitsche terms of Dirichlet or clamp faces imposed weakly.
    """

    energy: Form
    loads: tuple[Form, ...]
    energy_norm: Callable[[Tensor, Tensor], Tensor]
    derived: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]]
    exact: ExactSolution | None = None
    primary: str = "u"
    frame_fields: FrameFields | None = None
    boundary_fields: BoundaryFields | None = None
    weak: tuple[Form, ...] = ()

    @property
    def boundary(self) -> tuple[Form, ...]:
        """The boundary forms: the loads, then the Nitsche terms."""
        return (*self.loads, *self.weak)

    @property
    def forms(self) -> tuple[Form, ...]:
        """The volume form first, then the boundary forms: the energy is their sum."""
        return (self.energy, *self.boundary)


@dataclass(frozen=True)
class Term:
    """A form attached to a quadrature rule and a minibatch size: one summand of the loss."""

    form: Form
    rule: QuadratureRule
    batch: int

    @property
    def name(self) -> str:
        return self.form.name

    def with_rule(self, rule: QuadratureRule) -> "Term":
        """The same integrand on another rule (e.g. the finishing or evaluation rule)."""
        return replace(self, rule=rule)


def integrand(form: Form, trial: Trial, batch: PointBatch) -> Tensor:
    """``form``'s density at ``batch`` for a trial function (the ansatz or an exact solution)."""
    if form.needs_gradient:
        u, grad_u = trial(batch.points)
    else:
        u, grad_u = trial.value(batch.points), None
    return form.density(batch, u, grad_u)


def on_volume_rule(terms: Sequence[Term], rule: QuadratureRule) -> list[Term]:
    """The terms with the volume integral moved to ``rule``; boundary terms keep their rules."""
    return [t.with_rule(rule) if t.form.faces is None else t for t in terms]


def evaluate_vector(components: Sequence[Expression], points: Tensor) -> Tensor:
    """Values (b, m) of expressions ``components`` at ``points`` (b, 3)."""
    return torch.stack([c(points) for c in components], dim=1)


def normal_components(rows: Sequence[Sequence[Expression]], batch: PointBatch) -> Tensor:
    """``sum_j T_ij n_j`` (b, len(rows)) at a boundary batch, for a tensor given as rows of
    expressions (a flux vector is one row; a stress tensor three): the flux or traction."""
    return torch.stack([(evaluate_vector(row, batch.points) * batch.normals).sum(1) for row in rows], dim=1)


def is_zero(components: Sequence[Expression]) -> bool:
    """True if every expression is the constant 0 (a term that can be left out)."""
    return all(c.is_constant and c.constant_value == 0 for c in components)
