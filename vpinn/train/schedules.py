"""Learning-rate schedules: plain functions of the step (testable alone).

Linear warmup from ``lr / warmup`` to ``lr`` over the first ``warmup`` steps (large early
gradients of a freshly initialised network otherwise throw Adam's moment estimates off), then a
decay to ``lr_final`` at the last step: half a cosine, an exponential, or none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Schedule:
    """``step -> learning rate`` over ``steps`` steps: warmup, then ``decay`` to ``lr_final``."""

    lr: float
    steps: int
    warmup: int = 0
    decay: Literal["cosine", "exponential", "constant"] = "cosine"
    lr_final: float = 1e-5

    def __call__(self, step: int) -> float:
        """The learning rate of 0-based ``step``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - 1 - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        if self.decay == "cosine":
            return self.lr_final + (self.lr - self.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.decay == "exponential":
            return self.lr * (self.lr_final / self.lr) ** progress
        return self.lr
