"""Going on after a CUDA out-of-memory error: halve what is evaluated at once, say so, retry.

:class:`OutOfMemoryBackoff` wraps a phase's optimiser.  When a step raises
``torch.OutOfMemoryError`` (which only CUDA's allocator raises), the allocator's cached blocks
are released, the number of points evaluated at once is halved, one warning line says what
changed, and the step is tried again:

* a minibatch phase (one with a batch plan, :mod:`vpinn.train.batching`) halves its
  micro-batch: the batch and therefore the estimate stay the same, its gradient is accumulated
  over twice as many pieces;
* a full-rule phase halves the chunk of its exact sums.

Down to one point the original error ends the run.  The failed attempt may have drawn a batch
and accumulated gradients: every optimiser clears gradients at the start of a step, and a fresh
batch is as unbiased as the lost one.  Only a process on its own backs off: with several ranks
the others would wait in a collective for the failed one, so there the error ends the run.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

from vpinn.errors import VpinnWarning
from vpinn.train.optimizers import Optimizer, StepReport


class OutOfMemoryBackoff:
    """``optimizer`` (with a ``problem``, a :class:`~vpinn.train.optimizers.TrainingProblem`,
    and for minibatch phases a ``plan``) with the back-off of the module docstring; ``name`` is
    the phase's, for the warning."""

    def __init__(self, optimizer: Optimizer, name: str):
        self.optimizer, self.name = optimizer, name

    def step(self) -> StepReport:
        while True:
            try:
                return self.optimizer.step()
            except torch.OutOfMemoryError:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                change = self._halve()
                if change is None:
                    raise
                warnings.warn(VpinnWarning(f"CUDA out of memory in a {self.name} step: {change}; going on"))

    def _halve(self) -> str | None:
        """Halve the micro-batch (minibatch phases) or the chunk; what changed, or None if nothing can."""
        plan = getattr(self.optimizer, "plan", None)
        if plan is not None:
            at_once = min(plan.micro, max(plan.batches))
            if at_once <= 1:
                return None
            plan.micro = at_once // 2
            return f"micro-batch {at_once:,} -> {plan.micro:,} points"
        problem = self.optimizer.problem
        if problem.chunk <= 1:
            return None
        self.optimizer.problem = dataclasses.replace(problem, chunk=problem.chunk // 2)
        return f"chunk {problem.chunk:,} -> {problem.chunk // 2:,} points"

    def __getattr__(self, name: str):
        """Everything else (``plan``, ``problem``, ...) is the wrapped optimiser's."""
        return getattr(self.optimizer, name)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
