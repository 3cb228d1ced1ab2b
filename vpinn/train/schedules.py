"""Learning-rate schedules: plain functions of the step (testable alone).

Linear warmup from ``lr / warmup`` to ``lr`` over the first ``warmup`` steps (large early
gradients of a freshly initialised network otherwise throw Adam's moment estimates off), then a
decay to ``lr_final`` at the last step: half a cosine, an exponential, or none.
"""

from __future__ import annotations

import math

from vpinn.problem.spec import TrainSpec


def learning_rate(step: int, spec: TrainSpec) -> float:
    """The learning rate of 0-based ``step`` of ``spec.steps``."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    span = max(1, spec.steps - 1 - spec.warmup)
    progress = min(1.0, (step - spec.warmup) / span)
    if spec.decay == "cosine":
        return spec.lr_final + (spec.lr - spec.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    if spec.decay == "exponential":
        return spec.lr * (spec.lr_final / spec.lr) ** progress
    return spec.lr
