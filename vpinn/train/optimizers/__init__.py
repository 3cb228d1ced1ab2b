"""Optimisers: one file each, one small protocol, one registry.

An optimiser is built once per training phase from the :class:`TrainingProblem` (the shared
parameters, the trial function, the loss terms and their samplers) and its own keyword options;
:meth:`Optimizer.step` does one update of the parameters and returns a :class:`StepReport`;
``state_dict`` / ``load_state_dict`` carry its state through checkpoints.  An optimiser with a
``deadline`` attribute (Adam, whose batch growth depends on the time left) is given the phase's
deadline (``time.perf_counter`` seconds, None: no time limit) by the loop before the phase runs.
Adding an optimiser is one new file and one entry in :data:`OPTIMIZERS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from vpinn.distributed import LOCAL, Group
from vpinn.physics.base import Term, Trial
from vpinn.sampling import Sampler


@dataclass(frozen=True)
class TrainingProblem:
    """What an optimiser may use: the parameters it updates, the trial function they define,
    the loss terms (each with its training rule and batch size), one sampler per term, the
    chunk size of exact full-rule sums, the compute device, and the ranks that share the work
    (:class:`~vpinn.distributed.Group`; a process on its own by default)."""

    parameters: list[torch.Tensor]
    trial: Trial
    terms: list[Term]
    samplers: list[Sampler]
    chunk: int
    device: torch.device
    group: Group = LOCAL


@dataclass
class StepReport:
    """What one step did.  ``loss`` and ``grad_norm`` may stay on the device (tensors): the loop
    reads them back only when it logs.  ``points`` is the number of volume points the step's
    estimate used (over all ranks), ``epochs`` the passes over the training rule so far (NaN if
    none); ``diagnostics`` are further device scalars for the history (the noise statistics),
    ``note`` a change the step made (e.g. a new batch size) for the log, ``communicated`` the
    payload bytes this rank handed to all-reduce in the step (set by the loop)."""

    loss: torch.Tensor | float
    grad_norm: torch.Tensor | float
    lr: float
    points: int
    epochs: float = float("nan")
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    converged: bool = False
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)
    note: str | None = None
    communicated: int = 0


class Optimizer(Protocol):
    """One phase's update rule (see the module docstring)."""

    def step(self) -> StepReport:
        """One update of the parameters."""

    def state_dict(self) -> dict:
        """The optimiser's state, for checkpoints."""

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state of :meth:`state_dict`."""


def _registry() -> dict[str, Callable[..., Optimizer]]:
    from vpinn.train.optimizers.adam import Adam
    from vpinn.train.optimizers.engd import Engd
    from vpinn.train.optimizers.lbfgs import Lbfgs
    from vpinn.train.optimizers.msqn import Msqn

    return {"adam": Adam, "lbfgs": Lbfgs, "engd": Engd, "msqn": Msqn}


#: optimiser name -> class, called as ``cls(problem, dtype=..., steps=..., **options)``
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = _registry()

__all__ = ["OPTIMIZERS", "Optimizer", "StepReport", "TrainingProblem"]
