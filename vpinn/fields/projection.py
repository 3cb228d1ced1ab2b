"""Rollers on oblique planes: ``u . n = 0`` imposed exactly by projecting the network's output.

A roller on a plane normal to an axis fixes one component and lives in that component's
distance function (:class:`~vpinn.fields.ansatz.HardDirichletAnsatz`).  A plane with unit
normal ``n`` along no axis constrains a combination of components instead; with a weight
``psi`` that is 1 on the plane, the map

    P v = v - psi(x) (n . v) n

gives ``n . P v = (1 - psi) n . v``: zero on the plane, while the tangential part of ``v`` is
kept whole.  The ansatz becomes ``u = g + P_m ... P_1 (d * N)``, one map per oblique plane; it is
linear in ``d * N``, so the parameter Jacobian's rows go through the same maps.

Other conditions stay exact when ``psi`` vanishes where they hold, or ``n`` does not touch
them.  A clamp face has ``d * N = 0``, so ``u = g`` there whatever ``P`` does.  A roller normal
to ``n`` (another oblique plane, or an axis plane whose axis is perpendicular to ``n``) is not
touched by ``P``: ``n_k = 0`` for its axis, and ``m^T P = m^T`` for a perpendicular normal ``m``.
For a roller plane at another angle (``F_c``, the ``crossing`` faces),

    psi = D (1 - phi) / (D (1 - phi) + phi),

with ``phi`` the distance function of the plane's own face and ``D`` that of the crossing faces:
``psi = 1`` on the face (``phi = 0``) and ``psi = 0`` on the crossing faces (``D = 0``), so
``P`` is the identity there.  This needs the face and the crossing faces not to meet (the
denominator vanishes where both distances do); the loader refuses rollers that meet at an angle
other than 90 degrees.  Without crossing faces ``psi = 1 - phi``.  Between the planes, ``P`` has the
eigenvalue ``1 - psi > 0`` along ``n`` and 1 across it: it loses nothing of the network's output.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Tensor = torch.Tensor
DistanceFunction = Callable[[Tensor], tuple[Tensor, Tensor]]


class RollerWeight:
    """``psi`` (b,) and ``grad psi`` (b, 3) of one oblique roller (see the module docstring):
    ``own`` is the distance function of its face, ``crossing`` that of the roller faces at
    another angle than 90 degrees to it (None: there are none)."""

    def __init__(self, own: DistanceFunction, crossing: DistanceFunction | None = None):
        self.own, self.crossing = own, crossing

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        phi, grad_phi = self.own(x)
        if self.crossing is None:
            return 1 - phi, -grad_phi
        far, grad_far = self.crossing(x)
        a = far * (1 - phi)
        grad_a = grad_far * (1 - phi)[:, None] - far[:, None] * grad_phi
        total = a + phi
        return a / total, (grad_a * phi[:, None] - a[:, None] * grad_phi) / (total * total)[:, None]


class RollerProjection:
    """``v -> P_m ... P_1 v`` with ``P_j v = v - psi_j (n_j . v) n_j``: one map per oblique
    roller, ``normals`` unit (3,) and ``weights`` (:class:`RollerWeight`) in the same order."""

    def __init__(self, normals: Sequence[tuple[float, float, float]], weights: Sequence[RollerWeight]):
        self.normals, self.weights = [tuple(float(c) for c in n) for n in normals], list(weights)

    def apply_(self, x: Tensor, value: Tensor, grad: Tensor | None = None) -> None:
        """In place: ``value`` (b, 3, *T) becomes ``P value`` and ``grad`` (b, 3, 3, *T), the
        x-gradient of ``value`` (row k: component k), becomes that of ``P value``
        (``grad P v = P grad v - n (n . v) grad psi^T``).  Trailing dimensions ``T`` are carried
        along (the parameter Jacobian's columns); every operation keeps autograd's graph."""
        ones = (1,) * (value.dim() - 2)
        for normal, weight in zip(self.normals, self.weights):
            psi, grad_psi = weight(x)
            psi, grad_psi = psi.view(-1, *ones), grad_psi.view(*grad_psi.shape, *ones)
            along = sum(n * value[:, k] for k, n in enumerate(normal) if n)  # n . v (b, *T)
            if grad is not None:
                change = psi[:, None] * sum(n * grad[:, k] for k, n in enumerate(normal) if n) + grad_psi * along[:, None]
                for k, n in enumerate(normal):
                    if n:
                        grad[:, k].sub_(change, alpha=n)
            removed = psi * along
            for k, n in enumerate(normal):
                if n:
                    value[:, k].sub_(removed, alpha=n)
