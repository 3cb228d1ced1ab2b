"""What every PDE module provides: the energy's integrals, the trial function, error norms.

A PDE is described to the rest of vpinn by a :class:`Physics`: a list of :class:`Term` (the
integrals whose sum is the loss, each with its own quadrature rule and minibatch size), the trial
function (hard-BC ansatz around the network), the exact solution if known, the density of the
energy norm, the derived fields written on export and, optionally, the fields in a local frame
that profile plots show.  Densities are plain functions of the points and of ``(u, grad u)``, so
the same density gives the loss of the network and, applied to the exact solution, the reference
energy ``E(u*)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from vpinn.calculus import value_and_gradient
from vpinn.expressions import Expression
from vpinn.fields.ansatz import HardDirichletAnsatz
from vpinn.geometry.base import Domain
from vpinn.problem.spec import ProblemSpec
from vpinn.quadrature import ConcatRule, build_rule
from vpinn.quadrature.base import PointBatch, QuadratureRule

Tensor = torch.Tensor
#: (points, u (b, m), grad u (b, m, 3) or None) -> integrand (b,)
Density = Callable[[PointBatch, Tensor, Tensor | None], Tensor]
#: (u (b, m), grad u (b, m, 3), frame (b, 3, 3) of unit row vectors, the frame's axis names)
#: -> named scalar fields (b,) in that frame
FrameFields = Callable[[Tensor, Tensor, Tensor, tuple[str, str, str]], dict[str, Tensor]]


@dataclass(frozen=True)
class Term:
    """One integral ``sum_i w_i density(x_i, u, grad u)`` of the loss, over the domain or over
    a boundary part (``on_boundary``: its density sees ``u`` only, ``grad u`` is None)."""

    name: str
    rule: QuadratureRule
    batch: int
    density: Density
    on_boundary: bool = False

    def with_rule(self, rule: QuadratureRule) -> "Term":
        """The same integrand on another rule (e.g. the finishing rule)."""
        return replace(self, rule=rule)


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


@dataclass
class Physics:
    """Everything the trainer, evaluator and exporter need to know about one PDE.

    ``energy_norm(points, grad_error)`` is the density of the squared energy norm (b,);
    ``derived(points, u, grad_u)`` returns named fields (b,) or (b, k) to export, among them
    ``primary`` (the solution itself, compared with the exact one on export);
    ``frame_fields`` gives the scalar fields that profile plots show along a domain's
    :class:`~vpinn.geometry.base.Profile` (e.g. ``u_r``, ``sigma_rr`` along a radius).
    """

    solution: HardDirichletAnsatz
    terms: list[Term]
    energy_norm: Callable[[Tensor, Tensor], Tensor]
    derived: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]]
    exact: ExactSolution | None = None
    primary: str = "u"
    frame_fields: FrameFields | None = None

    def terms_on(self, volume_rule: QuadratureRule) -> list[Term]:
        """The terms with the volume integrals on ``volume_rule`` (the finishing or evaluation
        rule); boundary terms keep their own rules."""
        return [t if t.on_boundary else t.with_rule(volume_rule) for t in self.terms]


def integrand(term: Term, trial: Callable, batch: PointBatch) -> Tensor:
    """``term``'s density at ``batch`` for a trial function (the ansatz or an exact solution)."""
    if term.on_boundary:
        u, grad_u = trial.value(batch.points), None
    else:
        u, grad_u = trial(batch.points)
    return term.density(batch, u, grad_u)


def boundary_load_term(name: str, spec: ProblemSpec, domain: Domain, faces: tuple[str, ...],
                       load: Callable[[PointBatch], Tensor]) -> Term:
    """The energy term ``-integral over faces of load . u ds`` of a prescribed boundary load.

    ``load(batch)`` (b, m) is the Neumann flux ``h`` (m = 1) or the traction ``t`` (m = 3) at the
    batch's points (with their outward normals).  The faces' rules are ``quadrature.boundary``
    on each face, back to back (lazy); minibatches of ``train.boundary_batch`` points.
    """
    rule = ConcatRule([build_rule(spec.quadrature.boundary, domain.face_map(f)) for f in faces])

    def density(batch: PointBatch, u: Tensor, grad_u: Tensor | None) -> Tensor:
        return -(load(batch) * u).sum(dim=1)

    return Term(name, rule, spec.train.boundary_batch, density, on_boundary=True)


def volume_term(spec: ProblemSpec, domain: Domain, density: Density) -> Term:
    """The energy's volume integral ``density`` on the training rule, minibatches of ``train.batch``."""
    return Term("energy", build_rule(spec.quadrature.training, domain.volume_map()), spec.train.batch, density)


def lifts_of(spec: ProblemSpec, entries: Sequence) -> list[Expression | None]:
    """The lift ``g`` of ``u = g + d*N``, one expression per component (None where zero), from the
    value conditions ``entries`` (all share one value, checked on loading; ``"auto"``: [exact])."""
    if not entries:
        return [None] * spec.pde.components
    value = entries[0].value
    data = spec.exact.components if value == "auto" else value if isinstance(value, tuple) else (value,)
    return [None if is_zero([g]) else g for g in data]


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
