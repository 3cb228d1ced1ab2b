"""The training loop: Adam on minibatches, then an optional full-batch L-BFGS finish.

Phase 1 (``adam``): each step samples every loss term, reweights to an unbiased estimate,
backpropagates, clips the gradient norm (``train.clip``), and takes an Adam step at the
scheduled learning rate.  Losses are read back to the host only every ``log_every`` steps.
Phase 2 (``lbfgs``, if ``train.lbfgs.iterations > 0``): the network moves to
``train.lbfgs.dtype`` and L-BFGS with a strong-Wolfe line search minimises the loss on the fixed
finishing rule, whose exact gradient is accumulated over chunks at bounded memory.  L-BFGS sees
the loss divided by its magnitude at the start of the phase (see
:class:`~vpinn.train.objective.MemoizedObjective` for why).

The loop stops early at a wall-clock budget (``max_time``; the finish gets
``lbfgs.time_share`` of it), on Ctrl-C (after the current step, with a checkpoint), or on a
non-finite loss (:class:`~vpinn.errors.TrainingDiverged`, keeping the last good checkpoint).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vpinn.device import synchronize
from vpinn.errors import TrainingDiverged, VpinnError
from vpinn.evaluate import energy, relative_errors
from vpinn.sampling import UniformSampler
from vpinn.setup import DTYPES, Setup
from vpinn.train.checkpoint import load_checkpoint, save_checkpoint
from vpinn.train.objective import MemoizedObjective, full_loss_backward, minibatch_loss
from vpinn.train.schedules import learning_rate


@dataclass
class TrainResult:
    """How training ended: ``status`` is completed, converged, time limit or interrupted."""

    status: str
    steps: int
    iterations: int
    seconds: float
    history: list[dict]


class Trainer:
    """Trains ``setup.field`` as ``setup.spec.train`` says; see the module docstring.

    Parameters
    ----------
    setup:
        The built problem.
    checkpoint_path:
        Where checkpoints go (None: no checkpoints, e.g. for benchmarks).
    max_time:
        Wall-clock budget in seconds for this run's training (None or 0: ``train.max_time``).
    progress:
        Show a progress bar on stderr.
    """

    def __init__(self, setup: Setup, checkpoint_path: str | Path | None = None, *,
                 max_time: float | None = None, progress: bool = True):
        self.setup, self.spec = setup, setup.spec.train
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.max_time = max_time or self.spec.max_time or None
        self.progress = progress
        self.terms = setup.physics.terms
        self.samplers = [
            UniformSampler(term.rule.size, setup.device, self.spec.seed + 1 + k) for k, term in enumerate(self.terms)
        ]
        self.parameters = list(setup.field.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=self.spec.lr)
        self.lbfgs: torch.optim.LBFGS | None = None
        self.lbfgs_scale: float | None = None  # the L-BFGS objective's normalisation, fixed at its start
        self.phase, self.step, self.iteration = "adam", 0, 0
        self.history: list[dict] = []
        self.seconds_before = 0.0  # training time of earlier runs (resume)
        self._run_start = time.perf_counter()
        self._stop: str | None = None

    # ------------------------------------------------------------------ one Adam step
    def training_step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """One minibatch step; returns (loss, loss terms, gradient norm before clipping), on device."""
        lr = learning_rate(self.step, self.spec)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = minibatch_loss(self.terms, self.samplers, self.setup.physics.solution, self.setup.dtype)
        loss.backward()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.parameters])
        if self.spec.clip > 0:
            torch.nn.utils.clip_grads_with_norm_(self.parameters, self.spec.clip, grad_norm)
        self.optimizer.step()
        self.step += 1
        return loss.detach(), {k: v.detach() for k, v in parts.items()}, grad_norm

    # ------------------------------------------------------------------ the whole run
    def run(self) -> TrainResult:
        """Train until done, out of time, interrupted or diverged."""
        self._run_start = time.perf_counter()
        budget = self.max_time
        finishing = self.spec.lbfgs.iterations > 0
        events: set[str] = set()
        previous = self._install_interrupt_handler()
        try:
            if self.phase == "adam":
                share = (1 - self.spec.lbfgs.time_share) if finishing else 1.0
                self._adam_phase(self._run_start + budget * share if budget else None)
                events.add(self._stop or "completed")
            if finishing and self._stop != "interrupted" and self.iteration < self.spec.lbfgs.iterations:
                self._stop = None
                self._lbfgs_phase(self._run_start + budget if budget else None)
                events.add(self._stop or "completed")
        finally:
            self._restore_interrupt_handler(previous)
        self._checkpoint()
        status = next((e for e in ("interrupted", "time limit", "converged") if e in events), "completed")
        return TrainResult(status, self.step, self.iteration, self.elapsed(), self.history)

    def elapsed(self) -> float:
        """Training seconds so far, earlier runs included."""
        return self.seconds_before + time.perf_counter() - self._run_start

    def _adam_phase(self, deadline: float | None) -> None:
        spec = self.spec
        bar = tqdm(total=spec.steps, initial=self.step, desc="adam", unit="step", disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.5)
        loss_sum, count = None, 0
        try:
            while self.step < spec.steps and self._stop is None:
                loss, parts, grad_norm = self.training_step()
                loss_sum = loss if loss_sum is None else loss_sum + loss
                count += 1
                bar.update(1)
                due_eval = self.step % spec.eval_every == 0 or self.step == spec.steps
                if self.step % spec.log_every == 0 or due_eval:
                    row = self._record_steps(loss_sum / count, parts, grad_norm, due_eval)
                    bar.set_postfix(loss=f"{row['loss']:.6g}", lr=f"{row['lr']:.2e}", refresh=False)
                    loss_sum, count = None, 0
                if self.step % spec.checkpoint_every == 0:
                    self._check_finite(float(loss))  # never checkpoint a diverged network
                    self._checkpoint()
                if deadline is not None and time.perf_counter() >= deadline:
                    self._stop = "time limit"
            if count:  # steps since the last row: they end the phase, so evaluate too
                self._record_steps(loss_sum / count, parts, grad_norm, True)
        finally:
            bar.close()
        self._evaluate_last_row()

    def _lbfgs_phase(self, deadline: float | None) -> None:
        spec, setup = self.spec.lbfgs, self.setup
        if self.phase == "adam":
            setup.field.to(dtype=DTYPES[spec.dtype])
            self.lbfgs = self._new_lbfgs()
            self.phase = "lbfgs"
        terms = setup.physics.terms_on(setup.finish_rule)
        objective = MemoizedObjective(
            self.parameters,
            lambda: full_loss_backward(terms, setup.physics.solution, self.spec.chunk, setup.device, setup.dtype),
            self.lbfgs_scale,
        )
        bar = tqdm(total=spec.iterations, initial=self.iteration, desc="lbfgs", unit="it", disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.5)
        previous_loss, quiet = None, 0
        try:
            while self.iteration < spec.iterations and self._stop is None:
                self.lbfgs.step(objective)
                self.lbfgs_scale = objective.scale
                self.iteration += 1
                normalised = float(objective())  # the new point: usually remembered from the line search
                loss = normalised / objective.scale
                self._check_finite(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.10g}", refresh=False)
                due_eval = self.iteration % max(1, spec.iterations // 20) == 0
                self._record(loss, {}, float("nan"), float(objective.gradient.norm()) / objective.scale, due_eval)
                if self.iteration % self.spec.checkpoint_every == 0:
                    self._checkpoint()
                change = abs(normalised - previous_loss) if previous_loss is not None else math.inf
                quiet = quiet + 1 if change <= spec.tolerance * max(1.0, abs(normalised)) else 0
                previous_loss = normalised
                if quiet >= 3:
                    self._stop = "converged"
                if deadline is not None and time.perf_counter() >= deadline:
                    self._stop = "time limit"
        finally:
            bar.close()
        self._evaluate_last_row()

    def _new_lbfgs(self) -> torch.optim.LBFGS:
        spec = self.spec.lbfgs
        # One iteration per step() call (so the loop can log, checkpoint and stop between them);
        # max_eval bounds the line search's evaluations (torch's default for max_iter=1 is 1,
        # which would forbid any backtracking).
        return torch.optim.LBFGS(self.parameters, lr=1.0, max_iter=1, max_eval=25, history_size=spec.history,
                                 tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")

    # ------------------------------------------------------------------ bookkeeping
    def _evaluate(self) -> dict:
        """The loss functional on the evaluation rule, and the errors if the exact solution is known."""
        setup = self.setup
        physics, rule, chunk = setup.physics, setup.evaluation_rule, self.spec.chunk
        result = {"energy": energy(physics, physics.solution, rule, chunk, setup.device, setup.dtype)}
        if physics.exact is not None:
            result.update(relative_errors(physics, rule, chunk, setup.device, setup.dtype))
        return result

    def _evaluate_last_row(self) -> None:
        """Evaluate the last history row if it was not (the end of a phase)."""
        if self.history and "energy" not in self.history[-1]:
            self.history[-1].update(self._evaluate())

    def _record_steps(self, mean_loss: torch.Tensor, parts: dict, grad_norm: torch.Tensor, evaluate: bool) -> dict:
        """Record Adam steps since the last row (mean loss over them), failing on a non-finite loss."""
        loss = float(mean_loss)
        self._check_finite(loss)
        return self._record(loss, parts, learning_rate(self.step - 1, self.spec), float(grad_norm), evaluate)

    def _record(self, loss: float, parts: dict, lr: float, grad_norm: float, evaluate: bool) -> dict:
        synchronize(self.setup.device)
        row = {"step": self.step + self.iteration, "phase": self.phase, "loss": loss,
               **{f"loss_{name}": float(value) for name, value in parts.items()},
               "lr": lr, "grad_norm": grad_norm, "elapsed_s": self.elapsed()}
        if evaluate:
            row.update(self._evaluate())
        self.history.append(row)
        return row

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            where = f"{self.checkpoint_path}" if self.checkpoint_path and self.checkpoint_path.exists() else "none written"
            raise TrainingDiverged(
                f"the loss became {loss} at {self.phase} step {self.step + self.iteration}; "
                f"the last good checkpoint is kept ({where}). Lower train.lr, raise train.warmup or set train.clip."
            )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "phase": self.phase, "step": self.step, "iteration": self.iteration,
            "seconds": self.elapsed(), "history": self.history,
            "dtype": str(self.setup.dtype).removeprefix("torch."),
            "model": self.setup.field.state_dict(),
            "adam": self.optimizer.state_dict(),
            "lbfgs": self.lbfgs.state_dict() if self.lbfgs is not None else None,
            "lbfgs_scale": self.lbfgs_scale,
            "samplers": [s.state_dict() for s in self.samplers],
            # the sizes a run with train.memory_limit chose, reused on --resume
            "sizes": {"train.batch": self.spec.batch, "train.chunk": self.spec.chunk},
        }

    def load_state_dict(self, state: dict) -> None:
        field = self.setup.field
        field.to(dtype=DTYPES[state["dtype"]])
        try:
            field.load_state_dict(state["model"])
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise VpinnError(f"--resume: the checkpoint does not match this problem's [model] ({first})") from None
        self.optimizer.load_state_dict(state["adam"])
        if state["lbfgs"] is not None:
            self.lbfgs = self._new_lbfgs()
            self.lbfgs.load_state_dict(state["lbfgs"])
            self.lbfgs_scale = state.get("lbfgs_scale")
        if len(state["samplers"]) != len(self.samplers):
            raise VpinnError("--resume: the checkpoint has a different set of loss terms than this problem")
        for sampler, sampler_state in zip(self.samplers, state["samplers"]):
            sampler.load_state_dict(sampler_state)
        self.phase, self.step, self.iteration = state["phase"], state["step"], state["iteration"]
        self.history, self.seconds_before = list(state["history"]), float(state["seconds"])

    def resume(self, path: str | Path) -> None:
        """Continue from the checkpoint at ``path``."""
        self.load_state_dict(load_checkpoint(path))

    def _checkpoint(self) -> None:
        if self.checkpoint_path is not None:
            save_checkpoint(self.checkpoint_path, self.state_dict())

    # ------------------------------------------------------------------ Ctrl-C
    def _install_interrupt_handler(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            if self._stop == "interrupted":  # a second Ctrl-C: stop at once
                raise KeyboardInterrupt
            self._stop = "interrupted"

        return signal.signal(signal.SIGINT, request_stop)

    def _restore_interrupt_handler(self, previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
