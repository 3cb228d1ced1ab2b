"""Going on after a CUDA out-of-memory error: halve the batch and the chunk, say so, retry.

:class:`OutOfMemoryBackoff` wraps a phase's optimiser.  When a step raises
``torch.OutOfMemoryError`` (which only CUDA's allocator raises), the optimiser's problem gets
every term's batch and the chunk of full-rule sums halved, the allocator's cached blocks are
released, one warning line says what changed, and the step is tried again; a batch and chunk
that are down to one point end the run with the original error.  The failed attempt has drawn
a batch and maybe accumulated gradients: every optimiser clears gradients at the start of a
step and a fresh batch is as unbiased as the lost one.

Only a process on its own backs off: with several ranks the others would wait in a collective
for the failed one, so there the error ends the run.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

from vpinn.errors import VpinnWarning
from vpinn.train.optimizers import Optimizer, StepReport


class OutOfMemoryBackoff:
    """``optimizer`` (whose ``problem`` is a :class:`~vpinn.train.optimizers.TrainingProblem`)
    with the back-off of the module docstring; ``name`` is the phase's, for the warning."""

    def __init__(self, optimizer: Optimizer, name: str):
        self.optimizer, self.name = optimizer, name

    def step(self) -> StepReport:
        while True:
            try:
                return self.optimizer.step()
            except torch.OutOfMemoryError:
                problem = self.optimizer.problem
                batch, chunk = problem.terms[0].batch, problem.chunk
                if batch <= 1 and chunk <= 1:
                    raise
                self.optimizer.problem = dataclasses.replace(
                    problem, chunk=max(1, chunk // 2),
                    terms=[dataclasses.replace(t, batch=max(1, t.batch // 2)) for t in problem.terms])
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                warnings.warn(VpinnWarning(f"CUDA out of memory in a {self.name} step: batch {batch:,} -> "
                                           f"{max(1, batch // 2):,}, chunk {chunk:,} -> {max(1, chunk // 2):,}; going on"))

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
