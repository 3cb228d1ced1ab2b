"""Errors against the exact solution and the reference energy, on independent rules, in chunks.

The loss functional itself, :func:`energy`, is also evaluated exactly on the evaluation rule:
for the network it is the deterministic counterpart of the noisy minibatch loss, and for the
exact solution it gives ``E(u*)``, so that ``E(u) - E(u*) >= 0`` measures the distance to it.

Relative errors, each a ratio of quadrature sums on the evaluation rule (accumulated in float64):

* ``rel_l2``     = ||u - u*||_L2 / ||u*||_L2
* ``rel_h1``     = |u - u*|_H1 / |u*|_H1          (H1 seminorm: gradients only)
* ``rel_energy`` = ||u - u*||_E / ||u*||_E         (the physics' energy norm)

The evaluation rule should differ from the training rule (other nodes), so that a network that
fits the training points but not the function between them is caught.  With several ranks
(``group``) each sums its share of the rule and the sums are summed over the ranks.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from vpinn.distributed import LOCAL, Group, shared_total
from vpinn.physics.base import Physics, Term, Trial, integrand
from vpinn.quadrature.base import PointBatch, QuadratureRule


def relative_errors(physics: Physics, trial: Trial, rule: QuadratureRule, chunk: int, device, dtype,
                    group: Group = LOCAL) -> dict[str, float]:
    """``rel_l2``, ``rel_h1`` and ``rel_energy`` of ``trial`` against ``physics.exact`` (needed)."""

    def parts(batch: PointBatch) -> torch.Tensor:
        x = batch.points
        u, grad_u = trial(x)
        u_exact, grad_exact = physics.exact(x)
        error, grad_error = u - u_exact, grad_u - grad_exact
        return torch.stack(
            [
                (error * error).sum(1), (u_exact * u_exact).sum(1),
                (grad_error * grad_error).sum((1, 2)), (grad_exact * grad_exact).sum((1, 2)),
                physics.energy_norm(x, grad_error), physics.energy_norm(x, grad_exact),
            ],
            dim=1,
        )

    sums = shared_total(rule, parts, chunk, device, dtype, group).tolist()
    ratio = lambda a, b: math.sqrt(a / b) if b > 0 else math.sqrt(a)  # noqa: E731  (absolute if u* = 0)
    return {
        "rel_l2": ratio(sums[0], sums[1]),
        "rel_h1": ratio(sums[2], sums[3]),
        "rel_energy": ratio(sums[4], sums[5]),
    }


def energy(terms: Sequence[Term], trial: Trial, chunk: int, device, dtype, group: Group = LOCAL) -> float:
    """The loss functional ``E(trial)``, exactly: each term summed over its whole rule.
    ``trial`` is the ansatz or ``physics.exact`` (for ``E(u*)``)."""
    return sum(float(shared_total(term.rule, lambda b, f=term.form: integrand(f, trial, b), chunk, device, dtype, group))
               for term in terms)
