"""Batch sizes as a measured choice: growth by the noise scale and the step's cost, micro-batches, learning-rate coupling.

:class:`BatchPlan` holds the terms' batch sizes during a minibatch phase and decides changes from
the noise diagnostics (:mod:`vpinn.train.noise`):

* ``auto``: double every batch whenever a doubling raises the expected gain of the loss per
  second (:func:`doubling_gain`), or Adam's update is noise-dominated (its SNR in Adam's own
  metric below ``snr_threshold``), up to ``maximum`` points for the volume term (Adam then
  scales its second moments by the batch ratio, :mod:`vpinn.train.optimizers.adam`);
* ``term_allocation = "neyman"``: the total batch is split over the terms ``∝`` each term's
  per-point standard deviation ``s_t`` (Neyman's rule for ``sum_t s_t^2 / b_t``), from the
  measured spread of its points' contributions;
* ``micro``: a batch larger than this is drawn and back-propagated in micro-batches whose
  gradients accumulate, so memory stays that of ``micro`` points whatever the batch;
* the learning rate scales with the volume batch: ``sqrt`` (Adam in the noise-dominated regime,
  whose effective step grows like sqrt(b)), ``linear`` (SGD) or ``none``, relative to the batch
  the learning rate was given for.

The ``auto`` rule.  Adam's update is ``η m / sqrt(v)`` with ``v ≈ E g_b^2 = |E g|^2 + tr Σ / b``
(``Σ`` the per-point gradient covariance): its first-order decrease of the loss is
``η a(b)``, ``a(b) = |E g|^2 / sqrt(|E g|^2 + tr Σ / b)``, and the normalised step's size, hence
its second-order cost ``c η^2``, hardly depends on b.  At the best learning rate for the batch
(``η = a / 2c``) a step gains ``a^2 / 4c ∝ 1 / (1 + B / b)``, the form McCandlish et al. (2018)
derive for SGD, with the noise scale ``B = tr Σ / |E g|^2``.  A step of b points costs
``c0 + c1 b`` seconds, ``c1 (b + b_o)`` with ``b_o = c0 / c1`` the step's overhead in points
(``overhead``: logging, diagnostics, evaluations and kernel launches spread over the steps;
``run.py batches`` fits it from its fixed batches).  The gain per second
``b / ((b + B) (b + b_o))`` is largest at ``b* = sqrt(B b_o)``, and a doubling pays exactly when
``2 b^2 < B b_o``: the batch stays small while the signal is strong (``B`` small), and grows as the
noise takes over near the minimum (``B`` grows, without bound once the averaged signal is no
longer resolved: only larger batches then make progress at the scheduled learning rate), up to
``maximum``.  On a CPU (``b_o`` ~ 10^3) growth comes later than on a GPU (~ 5 * 10^5), where a
step costs about the same for every b below ``b_o``.  By default the learning rate stays the
schedule's (``lr_scaling = "none"``): the best learning rate grows like ``sqrt(b)`` in this model, but the
model omits the stability limit that bounds it.  The doubling test uses the measured SNR
``s = b / B`` (:func:`doubling_gain`), finite even when the averaged signal is not positive.

The cost model takes the learning rate to be the best one for each batch; a run follows its
schedule instead, and there Adam stalls for another reason.  Its update ``η m / sqrt(v)`` moves
every coordinate by about ``η``, and a coordinate whose noise ``σ_j / sqrt(b)`` exceeds its mean
gradient moves at random: the plain SNR ``|E g|^2 / tr Cov`` is dominated by the few largest
coordinates and can stay large while most of the update is noise.  The SNR in Adam's metric
``P = diag(1 / (sqrt(v) + eps))``, ``|E g|_P^2 / tr(P Cov)`` (:mod:`vpinn.train.noise`), weighs
every coordinate as the update does; below ``snr_threshold`` (default 1: noise and signal equal
in the update) the batch doubles, which halves the noise part of the update at the scheduled
learning rate.  Near the end of a schedule this is what lets the error fall with the learning
rate rather than settle at the noise floor of a small batch.

Under a time limit the batch never grows past the size at which the rest of the phase, at the
time per step measured since the previous diagnostic (scaled by ``(b' + b_o) / (b + b_o)``),
would end after the phase's deadline: growth that would cut the schedule short buys a lower
noise floor for a learning rate the run never reaches.

Decisions need four numbers on the host, read at diagnostic steps only (every ``log_every`` steps,
when the loop reads the loss anyway).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from vpinn.sampling import Sampler


def split(total: int, parts: int, granule: int) -> list[int]:
    """``total`` (a multiple of ``granule``) as ``<= parts`` positive multiples of ``granule``, as equal as possible."""
    units = total // granule
    parts = max(1, min(parts, units))
    return [granule * (units // parts + (k < units % parts)) for k in range(parts)]


def fit(batch: int, sampler: Sampler) -> int:
    """The batch nearest ``batch`` that ``sampler`` can draw (a multiple of its granule, at least its minimum)."""
    granule = sampler.granule
    return max(sampler.minimum, granule * max(1, round(batch / granule)))


LR_FACTORS = {"sqrt": math.sqrt, "linear": lambda ratio: ratio, "none": lambda ratio: 1.0}


def doubling_gain(batch: int, snr: float, overhead: float) -> float:
    """The factor by which doubling ``batch`` changes the expected gain of the loss per second
    (module docstring): ``2 (1 + s) / (1 + 2 s) · (b + b_o) / (2 b + b_o)`` with ``s = b / B`` the
    measured SNR at ``batch`` (clamped at 0: the signal not resolved) and ``b_o = overhead``; a
    doubling pays when it is above 1, i.e. when ``2 b^2 < B b_o``."""
    s = max(snr, 0.0)
    return 2 * (1 + s) / (1 + 2 * s) * (batch + overhead) / (2 * batch + overhead)


class BatchPlan:
    """The batch of each term and how they change (module docstring)."""

    def __init__(self, batches: Sequence[int], samplers: Sequence[Sampler], *, maximum: int, micro: int,
                 auto: bool = False, overhead: float = 4096.0, snr_threshold: float = 1.0, lr_scaling: str = "none",
                 term_allocation: str = "fixed", average: float = 0.7):
        self.samplers = list(samplers)
        self.batches = [fit(b, s) for b, s in zip(batches, self.samplers)]
        self.reference = self.batches[0]
        self.maximum, self.micro, self.auto, self.overhead = maximum, micro, auto, overhead
        self.snr_threshold = snr_threshold
        self.lr_scaling, self.term_allocation, self.average = lr_scaling, term_allocation, average
        self.per_point: float | None = None  # averaged tr Σ, per point of the volume batch
        self.signal: float | None = None  # averaged |E g|^2
        self.adam_per_point: float | None = None  # the same two in Adam's metric (adam_snr)
        self.adam_signal: float | None = None
        self.since_change = 0
        self.growth = 1.0  # b / b' of the volume batch's doubling at the latest update (1: none)

    @property
    def adaptive(self) -> bool:
        """Whether diagnostics change the batches (then they are read back at diagnostic steps)."""
        return self.auto or self.term_allocation == "neyman"

    def lr_factor(self) -> float:
        return LR_FACTORS[self.lr_scaling](self.batches[0] / self.reference)

    def pieces(self, term: int, batch: int | None = None) -> list[int]:
        """Micro-batch sizes whose draws make up ``batch`` (default: the term's batch) points."""
        batch = self.batches[term] if batch is None else batch
        return split(batch, math.ceil(batch / self.micro), self.samplers[term].granule)

    def halves(self, term: int) -> tuple[int, int] | None:
        """Two draws making up the term's batch (for the noise diagnostics), or None if it cannot be split."""
        sampler, batch = self.samplers[term], self.batches[term]
        first = sampler.granule * (batch // 2 // sampler.granule)
        if first < sampler.minimum or batch - first < sampler.minimum:
            return None
        return first, batch - first

    def update(self, noise: dict[str, torch.Tensor], spreads: Sequence[torch.Tensor],
               fits: Callable[[int], bool] = lambda batch: True) -> str | None:
        """Fold one diagnostic in; change the batches if the rules say so, growing the volume
        batch only to a size for which ``fits`` (the rest of the phase ends in its time) holds.
        Returns a note of the change (for the log) or None."""
        self.growth = 1.0
        if not self.adaptive:
            return None
        per_point, signal = float(noise["grad_trace"]) * self.batches[0], float(noise["grad_signal"])
        if not (math.isfinite(per_point) and math.isfinite(signal)):
            return None
        self.per_point, self.signal = self._averaged(self.per_point, per_point), self._averaged(self.signal, signal)
        if "adam_trace" in noise and math.isfinite(float(noise["adam_trace"])):
            self.adam_per_point = self._averaged(self.adam_per_point, float(noise["adam_trace"]) * self.batches[0])
            self.adam_signal = self._averaged(self.adam_signal, float(noise["adam_signal"]))
        self.since_change += 1
        note = None
        if self.term_allocation == "neyman" and len(self.batches) > 1:
            note = self._allocate([float(s) for s in spreads])
        if self.auto and self.since_change >= 2 and self.batches[0] < self.maximum:
            batch = self.batches[0]
            snr = batch * self.signal / max(self.per_point, 1e-300)
            gain = doubling_gain(batch, snr, self.overhead)
            adam_snr = math.inf if self.adam_signal is None else batch * self.adam_signal / max(self.adam_per_point, 1e-300)
            grown = [fit(min(2 * b, self.maximum) if k == 0 else 2 * b, s)
                     for k, (b, s) in enumerate(zip(self.batches, self.samplers))]
            if (gain > 1 or adam_snr < self.snr_threshold) and fits(grown[0]):
                reason = (f"a doubling gives {gain:.3f} times the gain per second" if gain > 1 else
                          f"Adam's update is noise-dominated, SNR {adam_snr:.3g} in its metric")
                note = f"batch {batch:,} -> {grown[0]:,} (gradient SNR {snr:.3g}: {reason})"
                self.growth = batch / grown[0]
                self.batches, self.since_change = grown, 0
        return note

    def _averaged(self, average: float | None, value: float) -> float:
        """The running average of a diagnostic after folding in ``value`` (the first one as it is)."""
        return value if average is None else self.average * average + (1 - self.average) * value

    def _allocate(self, spreads: list[float]) -> str | None:
        total = sum(self.batches)
        if not all(math.isfinite(s) and s >= 0 for s in spreads) or sum(spreads) <= 0:
            return None
        wanted = [fit(max(1, round(total * s / sum(spreads))), sampler) for s, sampler in zip(spreads, self.samplers)]
        wanted[0] = min(wanted[0], self.maximum)
        if wanted == self.batches:
            return None
        self.batches = wanted
        return "term batches " + ", ".join(f"{b:,}" for b in wanted) + " (Neyman allocation)"

    def state_dict(self) -> dict:
        return {"batches": list(self.batches), "reference": self.reference, "per_point": self.per_point,
                "signal": self.signal, "adam_per_point": self.adam_per_point, "adam_signal": self.adam_signal,
                "since_change": self.since_change}

    def load_state_dict(self, state: dict) -> None:
        self.batches, self.reference = [int(b) for b in state["batches"]], int(state["reference"])
        self.per_point, self.signal, self.since_change = state["per_point"], state["signal"], int(state["since_change"])
        self.adam_per_point, self.adam_signal = state["adam_per_point"], state["adam_signal"]
