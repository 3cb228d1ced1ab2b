"""Adam on minibatch estimates: sample -> estimate -> gradient -> clip -> schedule -> update.

Each step draws every loss term's batch (in micro-batches when it exceeds the plan's ``micro``),
reweights to an unbiased estimate of the loss, back-propagates, sums the gradient over the ranks
(compressed as ``train.compression`` says), clips the gradient's global norm, sets the scheduled
learning rate (times the batch plan's factor) and takes an Adam step (PyTorch's fused
implementation on CUDA: one kernel for all parameters, no host synchronisation).

Every ``diagnose_every`` steps the batch is drawn as two independent halves whose gradients give
the noise diagnostics (:mod:`vpinn.train.noise`: the trace of the gradient covariance, the
signal ``|E g|^2``, the SNR and the noise scale, and the SNR in Adam's own metric
``1 / (sqrt(v) + eps)``); the step then uses their weighted mean, the
same estimate as one draw (with several ranks each half is summed over the ranks, exactly,
before the statistics, so that they are those of the global halves).  The batch plan (:mod:`vpinn.train.batching`) may then change the
batches (under a time limit only to a batch at which the rest of the phase still ends in
time, forecast from the measured time per step); a doubling of the volume batch from b to b'
points scales Adam's second moments by b / b' (their noise part).  Clipping is off (0), at a fixed norm, or ``"auto"``: at a running estimate of the true
gradient's norm ``|E g|`` (the best threshold of the simple noisy-quadratic model), the averaged
``|g|^2`` debiased by the latest noise trace; the report says how often it acted.

Nothing is read back to the host except at diagnostic steps when the plan is adaptive: the
report's tensors stay on the device until the loop logs them.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from vpinn.train.batching import BatchPlan
from vpinn.train.estimate import flat_gradient, minibatch_backward, set_flat_gradient, sum_minibatch
from vpinn.train.noise import noise_statistics
from vpinn.train.optimizers import StepReport, TrainingProblem
from vpinn.train.schedules import Schedule

_NOISE_KEYS = ("grad_trace", "grad_signal", "snr", "noise_scale", "adam_trace", "adam_signal", "adam_snr")


def clip_by_global_norm(parameters: list[torch.Tensor], max_norm: float | torch.Tensor) -> torch.Tensor:
    """The gradients' global norm before clipping (a device scalar); the gradients are scaled in
    place so that their norm is at most ``max_norm`` (a device scalar, or a float: 0 = no clipping)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if torch.is_tensor(max_norm) or max_norm > 0:
        coefficient = (max_norm / (norm + 1e-30)).clamp(max=1.0)
        torch._foreach_mul_(grads, coefficient.to(grads[0].dtype))
    return norm


def _plan_per_ranks(state: dict, ranks: float) -> dict:
    """A batch plan's state with its per-rank sizes (and the per-point noise measured on them)
    times ``ranks``: checkpoints hold the global sizes (``ranks = K`` on saving, ``1/K`` on
    loading), so that a run resumes with any number of ranks at the same global batch."""
    scale = lambda size: max(1, round(size * ranks))  # noqa: E731
    per_rank = {key: None if state[key] is None else state[key] * ranks for key in ("per_point", "adam_per_point")}
    return {**state, "batches": [scale(b) for b in state["batches"]], "reference": scale(state["reference"]), **per_rank}


class Adam:
    """Adam with a :class:`~vpinn.train.schedules.Schedule`, a batch plan, noise diagnostics and clipping.

    Parameters
    ----------
    problem:
        The parameters, terms and samplers to train with.
    dtype:
        The dtype of the rule points (the network's dtype in this phase).
    steps:
        The phase's number of steps (the schedule's length).
    lr, warmup, decay, lr_final:
        The schedule (see :class:`~vpinn.train.schedules.Schedule`), ``lr`` for the plan's
        reference batch.
    clip:
        0: no clipping; a positive float: the maximum global gradient norm; ``"auto"``.
    plan:
        The batch sizes and their rules (default: the terms' batches, fixed, no micro-batches).
    diagnose_every:
        Steps between noise diagnostics (the loop's ``log_every``); 0: none.
    """

    def __init__(self, problem: TrainingProblem, *, dtype: torch.dtype, steps: int, lr: float, warmup: int = 0,
                 decay: str = "cosine", lr_final: float = 1e-5, clip: float | str = 0.0, plan: BatchPlan | None = None,
                 diagnose_every: int = 0):
        self.problem, self.dtype, self.clip, self.diagnose_every = problem, dtype, clip, diagnose_every
        self.schedule = Schedule(lr, steps, warmup, decay, lr_final)
        self.plan = plan or BatchPlan([t.batch for t in problem.terms], problem.samplers,
                                      maximum=problem.terms[0].rule.size, micro=max(t.batch for t in problem.terms))
        self.adam = torch.optim.Adam(problem.parameters, lr=lr, fused=problem.device.type == "cuda")
        self.count = 0
        device = problem.device
        nan = torch.full((), float("nan"), dtype=torch.float64, device=device)
        self.noise = {key: nan.clone() for key in _NOISE_KEYS}
        self.square_norm = torch.zeros((), dtype=torch.float64, device=device)  # running |g|^2 (clip = "auto")
        self.clipped = torch.zeros((), dtype=torch.float64, device=device)  # steps clipped since the last diagnostic
        self.notes: list[str] = []
        self.deadline: float | None = None  # the phase's deadline (time.perf_counter seconds), set by the loop
        self._lap: tuple[float, int] | None = None  # (time, count) at the previous diagnostic step

    def _diagnosed_gradient(self) -> dict[str, torch.Tensor] | None:
        """Back-propagate the step's batch as two half draws; set ``.grad`` to their weighted mean
        and return the noise statistics (None when a batch cannot be halved)."""
        problem, plan = self.problem, self.plan
        halves = [plan.halves(k) for k in range(len(problem.terms))]
        if any(h is None for h in halves):
            return None
        gradients, parts, spreads = [], [], []
        for side in range(2):
            self.adam.zero_grad(set_to_none=True)
            sizes = [h[side] for h in halves]
            half_parts, half_spreads = sum_minibatch(problem.parameters, problem.group, *minibatch_backward(
                problem.terms, problem.samplers, problem.trial, self.dtype, sizes, plan.pieces))
            gradients.append(flat_gradient(problem.parameters))
            parts.append(half_parts)
            spreads.append(half_spreads)
        volume = [problem.group.size * h for h in halves[0]]  # the global halves
        weights = [[h[side] / sum(h) for h in halves] for side in range(2)]
        set_flat_gradient(problem.parameters, (volume[0] * gradients[0] + volume[1] * gradients[1]) / sum(volume))
        self._parts = {name: weights[0][k] * parts[0][name] + weights[1][k] * parts[1][name]
                       for k, name in enumerate(parts[0])}
        self._spreads = [(a + b) / 2 for a, b in zip(*spreads)]
        return noise_statistics(gradients[0], gradients[1], volume, self._metric(), problem.samplers[0].population)

    def _metric(self) -> torch.Tensor | None:
        """The flat diagonal of Adam's metric ``1 / (sqrt(v_hat) + eps)`` (bias-corrected second
        moments, in :meth:`parameters` order), or None before the first step."""
        states = [self.adam.state.get(p, {}) for p in self.problem.parameters]
        if not all("exp_avg_sq" in state for state in states):
            return None
        group = self.adam.param_groups[0]
        correction = 1 - group["betas"][1] ** self.count
        root = torch.cat([state["exp_avg_sq"].flatten() for state in states]).double().div(correction).sqrt()
        return 1 / (root + group["eps"])

    def step(self) -> StepReport:
        problem, plan = self.problem, self.plan
        lr = self.schedule(self.count) * plan.lr_factor()
        for group in self.adam.param_groups:
            group["lr"] = lr
        diagnose = self.diagnose_every > 0 and self.count % self.diagnose_every == 0
        noise = self._diagnosed_gradient() if diagnose else None
        if noise is None:
            self.adam.zero_grad(set_to_none=True)
            self._parts, self._spreads = sum_minibatch(problem.parameters, problem.group, *minibatch_backward(
                problem.terms, problem.samplers, problem.trial, self.dtype, plan.batches, plan.pieces),
                key=self.count, compress=True)
        else:
            self.noise = noise
        grad_norm = self._clip()
        self.adam.step()
        self.count += 1
        report = StepReport(sum(self._parts.values()), grad_norm, lr, plan.batches[0] * problem.group.size,
                            problem.samplers[0].epochs,
                            dict(self._parts), diagnostics=dict(self.noise))
        if self.clip == "auto":
            report.diagnostics["clip_rate"] = self.clipped / max(1, self.diagnose_every)
        if noise is not None:
            self.clipped = torch.zeros_like(self.clipped)
            note = plan.update(noise, self._spreads, self._fits_in_time())
            if plan.growth != 1.0:
                self._rescale_second_moments(plan.growth)
            if note:
                self.notes.append(f"step {self.count}: {note}")
                report.note = note
        return report

    def _fits_in_time(self) -> Callable[[int], bool]:
        """Whether the rest of the phase at volume batch b' ends by ``deadline``: the time per
        step since the previous diagnostic, scaled by ``(b' + b_o) / (b + b_o)`` (the plan's cost
        model), times the steps left; the slowest rank decides (one all-reduce, at diagnostic
        steps, and only for ``batch = "auto"``).  Always true without a deadline or before a
        first measurement."""
        now, previous = time.perf_counter(), self._lap
        self._lap = (now, self.count)
        if not self.plan.auto or self.deadline is None or previous is None:
            return lambda batch: True
        plan, steps_left = self.plan, self.schedule.steps - self.count
        per_step = (now - previous[0]) / (self.count - previous[1])
        measured = torch.tensor([now + steps_left * per_step - self.deadline, per_step], dtype=torch.float64,
                                device=self.problem.device)
        late, per_step = self.problem.group.max_(measured).tolist()  # s past the deadline at today's batch; s/step

        def fits(batch: int) -> bool:
            factor = (batch + plan.overhead) / (plan.batches[0] + plan.overhead)
            return late + steps_left * per_step * (factor - 1) <= 0

        return fits

    def _rescale_second_moments(self, ratio: float) -> None:
        """Scale Adam's second moments ``v ≈ |E g|^2 + tr Σ / b`` by ``ratio = b / b'`` when the
        plan grows the volume batch (not on a Neyman reallocation): exact for the noise part,
        which dominates when the plan grows the batch; without it ``v`` would remember the smaller
        batch's noise for ~1 / (1 - beta2) = 1,000 steps and shrink every step by up to
        ``sqrt(b' / b)`` (a device operation: nothing is read back)."""
        moments = [state["exp_avg_sq"] for state in self.adam.state.values() if "exp_avg_sq" in state]
        if moments:
            torch._foreach_mul_(moments, ratio)

    def _clip(self) -> torch.Tensor:
        """Clip the gradients as ``clip`` says; their norm before clipping."""
        parameters = self.problem.parameters
        if self.clip == "auto":
            norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None]).double()
            self.square_norm = torch.where(self.square_norm > 0, 0.9 * self.square_norm + 0.1 * norm**2, norm**2)
            trace = torch.nan_to_num(self.noise["grad_trace"], nan=0.0)
            threshold = (self.square_norm - trace).clamp_min(0.01 * self.square_norm).sqrt()
            self.clipped += (norm > threshold).double()
            return clip_by_global_norm(parameters, threshold)
        return clip_by_global_norm(parameters, float(self.clip))

    def state_dict(self) -> dict:
        plan = _plan_per_ranks(self.plan.state_dict(), self.problem.group.size)
        return {"count": self.count, "adam": self.adam.state_dict(), "plan": plan,
                "noise": {k: v.to("cpu", copy=True) for k, v in self.noise.items()},
                "square_norm": self.square_norm.to("cpu", copy=True), "clipped": self.clipped.to("cpu", copy=True),
                "notes": list(self.notes)}

    def load_state_dict(self, state: dict) -> None:
        device = self.problem.device
        self.count = int(state["count"])
        self.adam.load_state_dict(state["adam"])
        self.plan.load_state_dict(_plan_per_ranks(state["plan"], 1 / self.problem.group.size))
        self.noise = {k: v.to(device, copy=True) for k, v in state["noise"].items()}
        self.square_norm, self.clipped = state["square_norm"].to(device, copy=True), state["clipped"].to(device, copy=True)
        self.notes = list(state["notes"])
