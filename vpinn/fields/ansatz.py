"""Hard Dirichlet conditions: ``u_k = g_k + d_k * N_k`` for each output component k.

``d_k`` vanishes on the faces where component k is prescribed (and is 1 where it is free), so
``u_k = g_k`` there for any network ``N``; ``g_k`` is the prescribed data, extended into the domain
by its own formula.  The product rule gives ``grad u_k = grad g_k + N_k grad d_k + d_k grad N_k``.
Rollers on oblique planes project ``d * N`` before the lift is added, ``u = g + P(d * N)``
(:mod:`vpinn.fields.projection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from vpinn.calculus import value_and_gradient
from vpinn.fields.network import Field
from vpinn.fields.parameter_jacobian import parameter_jacobian_rows
from vpinn.fields.projection import RollerProjection

Tensor = torch.Tensor
DistanceFunction = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class HardDirichletAnsatz:
    """A trial function satisfying Dirichlet data exactly.

    Parameters
    ----------
    field:
        The network ``N`` with m outputs.
    distances:
        One function per component returning ``d_k`` (b,) and ``grad d_k`` (b, 3), or None
        where the component is free (``d_k = 1``).
    lifts:
        One function per component returning ``g_k`` (b,), or None for ``g_k = 0``.
    projection:
        The oblique rollers' map ``P`` of ``u = g + P(d * N)`` (three components), or None.
    """

    field: Field
    distances: Sequence[DistanceFunction | None]
    lifts: Sequence[Callable[[Tensor], Tensor] | None]
    projection: RollerProjection | None = None

    def _factors(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``d`` (b, m) and ``grad d`` (b, m, 3); a distance shared by several components (equal
        distance functions, e.g. a clamp on every face) is evaluated once."""
        free = (torch.ones_like(x[:, 0]), torch.zeros_like(x))
        evaluated: dict = {}
        for distance in self.distances:
            if distance is not None and distance not in evaluated:
                evaluated[distance] = distance(x)
        pairs = [free if distance is None else evaluated[distance] for distance in self.distances]
        return torch.stack([p[0] for p in pairs], dim=1), torch.stack([p[1] for p in pairs], dim=1)

    def _lift(self, x: Tensor, with_gradient: bool) -> tuple[Tensor | None, Tensor | None]:
        """``g`` (b, m) and, if asked, ``grad g`` (b, m, 3); None when every ``g_k = 0``."""
        if all(g is None for g in self.lifts):
            return None, None
        zero = (torch.zeros_like(x[:, 0]), torch.zeros_like(x))
        if not with_gradient:
            return torch.stack([g(x) if g is not None else zero[0] for g in self.lifts], dim=1), None
        pairs = [value_and_gradient(g, x) if g is not None else zero for g in self.lifts]
        return torch.stack([p[0] for p in pairs], dim=1), torch.stack([p[1] for p in pairs], dim=1)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``u`` (b, m) and its spatial Jacobian (b, m, 3) at ``x`` (b, 3)."""
        n, grad_n = self.field.value_and_jacobian(x)
        d, grad_d = self._factors(x)
        u = d * n
        grad_u = grad_d * n[..., None] + d[..., None] * grad_n
        if self.projection is not None:
            self.projection.apply_(x, u, grad_u)
        g, grad_g = self._lift(x, with_gradient=True)
        if g is not None:
            u, grad_u = u + g, grad_u + grad_g
        return u, grad_u

    def value(self, x: Tensor) -> Tensor:
        """``u`` (b, m) only: no Jacobian is computed (boundary terms need none)."""
        d, _ = self._factors(x)
        u = d * self.field(x)
        if self.projection is not None:
            self.projection.apply_(x, u)
        g, _ = self._lift(x, with_gradient=False)
        return u if g is None else u + g

    def parameters(self) -> list[Tensor]:
        """The trainable parameters, in the column order of :meth:`parameter_jacobian`."""
        return self.field.flat_parameters()

    def parameter_jacobian(self, x: Tensor) -> Tensor:
        """``d(u, grad u)/dtheta`` (b, 4m, P) at ``x`` (b, 3): row k < m is ``du_k/dtheta``, row
        ``m + 3k + j`` is ``d(du_k/dx_j)/dtheta``; columns follow :meth:`parameters`.

        From the network's rows (:func:`~vpinn.fields.parameter_jacobian.parameter_jacobian_rows`)
        by the product rule of ``u_k = g_k + s d_k N_k`` (the lift does not depend on theta):
        ``du_k = s d_k dN_k`` and ``d(du_k/dx_j) = s (dd_k/dx_j dN_k + d_k d(dN_k/dx_j))``,
        computed in place in the one buffer; the oblique rollers' projection is linear in
        ``d * N`` and maps these rows as it maps ``(u, grad u)``.
        """
        rows = parameter_jacobian_rows(self.field, x)
        b, m = x.shape[0], len(self.distances)
        d, grad_d = self._factors(x)
        value, grad = rows[:, :m], rows[:, m:].view(b, m, 3, -1)
        grad.mul_(d[:, :, None, None]).addcmul_(grad_d[..., None], value[:, :, None, :])
        value.mul_(d[..., None])
        if self.projection is not None:
            self.projection.apply_(x, value, grad)
        return rows.mul_(self.field.output_scale)
