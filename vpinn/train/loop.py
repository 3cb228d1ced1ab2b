"""The training loop: phases of optimiser steps, logging, evaluation, checkpoints, stopping.

A run is a list of :class:`Phase` (e.g. Adam on minibatches, then L-BFGS on a fixed rule), each
an optimiser (:mod:`vpinn.train.optimizers`) with a step count, the network's dtype for the
phase and a share of the time budget.  The loop calls ``optimizer.step()``, reads the reports
back to the host only every ``log_every`` steps (one history row: mean loss since the last row,
the epoch and batch, the learning rate and gradient norm), evaluates the loss functional and the
errors every ``eval_every`` steps, and saves a checkpoint every ``checkpoint_every`` steps.

It stops a phase at its step count, before a step that would end past its deadline (``max_time``
times the cumulative time shares; the last step's duration is the forecast), or when the
optimiser reports convergence, and the whole run when the observer asks
(Ctrl-C, handled by the command layer) or on a non-finite loss
(:class:`~vpinn.errors.TrainingDiverged`, keeping the last good checkpoint).  With several
ranks (``group``) every stop decision is agreed by all of them after each step (the highest
reason any rank has wins), so that none is left waiting in a collective; the loss that is
checked for finiteness is already the same on every rank.  The training dtype
is explicit state: set by each phase, saved, and used by every evaluation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from vpinn.distributed import LOCAL, Group
from vpinn.errors import TrainingDiverged
from vpinn.train.optimizers import Optimizer, StepReport


@dataclass
class Phase:
    """One optimiser run for ``steps`` steps with the network in ``dtype``; ``time_share`` is the
    fraction of the time budget it may use (None: what the phases before it left)."""

    name: str
    optimizer: Optimizer
    steps: int
    dtype: torch.dtype
    log_every: int = 10
    eval_every: int = 500
    time_share: float | None = None


class Observer:
    """What the loop tells the outside world; the command layer subclasses it (progress bars,
    signals).  ``stop_requested`` returns a reason to stop the whole run, or None."""

    def phase_started(self, phase: Phase, done: int) -> None: ...
    def stepped(self, row: dict | None) -> None: ...
    def noted(self, text: str) -> None: ...
    def phase_ended(self) -> None: ...
    def stop_requested(self) -> str | None: return None


@dataclass
class TrainResult:
    """How training ended: ``status`` is completed, converged, time limit or interrupted."""

    status: str
    steps: dict[str, int]
    seconds: float
    phase_seconds: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Runs ``phases`` on ``network``; see the module docstring.

    ``stateful`` are further objects whose ``state_dict`` goes into checkpoints (the samplers);
    ``evaluate(dtype)`` returns the evaluation columns of a history row; ``save(state)`` writes a
    checkpoint (None: none).
    """

    def __init__(self, phases: list[Phase], network: torch.nn.Module, stateful: dict, evaluate: Callable[[torch.dtype], dict],
                 *, save: Callable[[dict], None] | None = None, checkpoint_every: int = 500, max_time: float | None = None,
                 observer: Observer | None = None, group: Group = LOCAL):
        self.phases, self.network, self.stateful, self.evaluate = phases, network, stateful, evaluate
        self.save, self.checkpoint_every, self.max_time = save, checkpoint_every, max_time or None
        self.observer, self.group = observer or Observer(), group
        self.dtype = phases[0].dtype
        self.current, self.done, self.phase_seconds = 0, [0] * len(phases), [0.0] * len(phases)
        self.history: list[dict] = []
        self.seconds_before, self._start = 0.0, time.perf_counter()
        self.saved_once = False

    @property
    def step(self) -> int:
        """Steps of all phases so far."""
        return sum(self.done)

    def elapsed(self) -> float:
        """Training seconds so far, earlier runs included."""
        return self.seconds_before + time.perf_counter() - self._start

    def run(self) -> TrainResult:
        """Train until every phase is done, or the run is interrupted or diverges."""
        self._start, events = time.perf_counter(), set()
        while self.current < len(self.phases):
            reason = self._run_phase(self.phases[self.current], self._deadline(self.current))
            events.add(reason)
            if reason == "interrupted":
                break
            self.current += 1
        self._checkpoint()
        status = next((e for e in ("interrupted", "time limit", "converged") if e in events), "completed")
        return TrainResult(status, {p.name: n for p, n in zip(self.phases, self.done)}, self.elapsed(),
                           list(self.phase_seconds), self.history)

    def _deadline(self, index: int) -> float | None:
        if self.max_time is None:
            return None
        shares = [p.time_share for p in self.phases[: index + 1]]
        share = 1.0 if None in shares or index == len(self.phases) - 1 else min(1.0, sum(shares))
        return self._start + self.max_time * share

    def _run_phase(self, phase: Phase, deadline: float | None) -> str:
        index, reason, pending, started = self.current, "completed", [], time.perf_counter()
        if self.dtype != phase.dtype:
            self.network.to(dtype=phase.dtype)
            self.dtype = phase.dtype
        self.observer.phase_started(phase, self.done[index])
        if hasattr(phase.optimizer, "deadline"):  # an optimiser whose decisions depend on the time left (Adam's batch growth)
            phase.optimizer.deadline = deadline
        try:
            lap_start = time.perf_counter()
            while self.done[index] < phase.steps:
                sent = self.group.bytes_sent
                report = phase.optimizer.step()
                report.communicated = self.group.bytes_sent - sent
                self.done[index] += 1
                pending.append(report)
                if report.note:
                    self.observer.noted(f"{phase.name} {report.note}")
                count = self.done[index]
                due_eval = count % phase.eval_every == 0 or count == phase.steps
                row = self._record(phase, pending, due_eval) if count % phase.log_every == 0 or due_eval else None
                pending = [] if row is not None else pending
                self.observer.stepped(row)
                if count % self.checkpoint_every == 0:
                    self._check_finite(float(report.loss))  # never checkpoint a diverged network
                    self._checkpoint()
                stop, now = self.observer.stop_requested(), time.perf_counter()
                # out of time when another step as long as this one would end past the deadline
                late = deadline is not None and 2 * now - lap_start >= deadline
                agreed = self.group.agree(stop or ("converged" if report.converged else "time limit" if late else None))
                if agreed:
                    reason = agreed
                    break
                lap_start = now
            if pending:  # steps since the last row end the phase: record and evaluate them
                self._record(phase, pending, True)
            elif self.history and "energy" not in self.history[-1]:
                self.history[-1].update(self.evaluate(self.dtype))
        finally:
            self.phase_seconds[index] += time.perf_counter() - started
            self.observer.phase_ended()
        return reason

    def _record(self, phase: Phase, reports: list[StepReport], evaluate: bool) -> dict:
        """One history row for ``reports`` (mean loss over them), failing on a non-finite loss."""
        last = reports[-1]
        losses = [r.loss for r in reports]
        loss = float(torch.stack(losses).double().mean()) if torch.is_tensor(losses[0]) else sum(losses) / len(losses)
        self._check_finite(loss)
        row = {"step": self.step, "phase": phase.name, "epoch": last.epochs, "batch": last.points, "loss": loss,
               **{f"loss_{name}": float(value) for name, value in last.parts.items()},
               "lr": last.lr, "grad_norm": float(last.grad_norm),
               **{name: float(value) for name, value in last.diagnostics.items()}, "elapsed_s": self.elapsed(),
               **({"comm_bytes": last.communicated} if last.communicated else {})}
        if evaluate:
            row.update(self.evaluate(self.dtype))
        self.history.append(row)
        return row

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            kept = "the last good checkpoint of this run is kept" if self.saved_once else "no checkpoint of this run was written"
            raise TrainingDiverged(f"the loss became {loss} at {self.phases[self.current].name} step {self.step}; "
                                   f"{kept}. Lower the phase's lr, raise its warmup or set its clip (e.g. train.phase[0].lr).")

    def _checkpoint(self) -> None:
        if self.save is not None:
            self.save(self.state_dict())
            self.saved_once = True

    def state_dict(self) -> dict:
        return {"current": self.current, "done": list(self.done), "seconds": self.elapsed(),
                "phase_seconds": list(self.phase_seconds), "history": self.history,
                "dtype": str(self.dtype).removeprefix("torch."), "model": self.network.state_dict(),
                "optimizers": [p.optimizer.state_dict() for p in self.phases],
                **{name: [s.state_dict() for s in objects] for name, objects in self.stateful.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.dtype = getattr(torch, state["dtype"])
        self.network.to(dtype=self.dtype)
        self.network.load_state_dict(state["model"])
        for phase, optimizer_state in zip(self.phases, state["optimizers"]):
            phase.optimizer.load_state_dict(optimizer_state)
        for name, objects in self.stateful.items():
            for thing, thing_state in zip(objects, state[name]):
                thing.load_state_dict(thing_state)
        # A finished run resumes in its last phase, which goes on if its step count was raised.
        self.current, self.done = min(int(state["current"]), len(self.phases) - 1), [int(n) for n in state["done"]]
        self.history, self.seconds_before = list(state["history"]), float(state["seconds"])
        self.phase_seconds = [float(t) for t in state["phase_seconds"]]
        self.saved_once = True  # the checkpoint this state came from is this run's, and it is kept
