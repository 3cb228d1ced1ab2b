"""Gradient noise per sampler at a fixed network state: what ``run.py variance`` measures.

For each sampler, ``repeats`` independent batches of ``batch`` points of the volume term (where
the choice of sampler acts) give gradient estimates ``g_r``; the trace of their covariance
``tr Cov(g) = sum_r |g_r - mean g|^2 / (R - 1)`` is the noise a training step sees.  Reported
with its ratio to uniform's and the noise scale ``B = b tr Cov(g) / |E g|^2`` (``|E g|^2``
debiased by ``tr Cov / R``).  The adaptive samplers (Neyman, importance) first learn from
``warmup`` draws, as they would during training.

The between/within split comes from two-stage designs (:mod:`vpinn.sampling.two_stage`): two
designs ``(M, A)`` of the same budget fit ``sigma_b^2, sigma_w^2``; the model then predicts the
trace of every design of that budget, and one more design is measured to check it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vpinn.physics.base import Term, Trial
from vpinn.sampling import Sampler, make_sampler
from vpinn.sampling.two_stage import TwoStageSampler, fit_between_within
from vpinn.train.estimate import flat_gradient, sampled_term

#: the samplers compared: (name, ``train.sampling``, allocation)
SAMPLERS = [("uniform", "uniform", "proportional"), ("stratified", "stratified", "proportional"),
            ("stratified-neyman", "stratified", "neyman"), ("sobol", "sobol", "proportional"),
            ("importance", "importance", "proportional")]


@dataclass(frozen=True)
class Measured:
    """The covariance trace of one sampler's gradient estimate and the squared norm of its mean."""

    trace: float
    mean_square: float


def gradient_noise(term: Term, sampler: Sampler, trial: Trial, parameters: list[torch.Tensor], dtype: torch.dtype,
                   batch: int, repeats: int, warmup: int = 0) -> Measured:
    """``tr Cov`` and ``|E g|^2`` of the gradient of ``term``'s estimate from ``batch`` points."""
    for _ in range(warmup):
        sampled_term(term, sampler, trial, dtype, batch)
    draws = []
    for _ in range(repeats):
        for p in parameters:
            p.grad = None
        estimate, _ = sampled_term(term, sampler, trial, dtype, batch)
        estimate.backward()
        draws.append(flat_gradient(parameters).double())
    stacked = torch.stack(draws)
    mean = stacked.mean(0)
    trace = float((stacked - mean).square().sum() / (repeats - 1))
    return Measured(trace, float(mean.square().sum()) - trace / repeats)


def compare_samplers(term: Term, trial: Trial, parameters: list[torch.Tensor], dtype: torch.dtype, device: torch.device,
                     *, batch: int, repeats: int, strata: int, seed: int, refresh_every: int = 20) -> list[dict]:
    """One row per sampler of :data:`SAMPLERS` (see the module docstring)."""
    rows, uniform = [], None
    for name, kind, allocation in SAMPLERS:
        sampler = make_sampler(kind, term.rule, device, seed, strata=strata, allocation=allocation, refresh_every=refresh_every)
        points = max(sampler.minimum, sampler.granule * (batch // sampler.granule))
        adaptive = kind == "importance" or allocation == "neyman"
        measured = gradient_noise(term, sampler, trial, parameters, dtype, points, repeats, 5 * refresh_every if adaptive else 0)
        uniform = uniform or measured.trace * points  # per point, so that a rounded batch compares fairly
        rows.append({"sampler": name, "batch": points, "trace": measured.trace, "ratio_to_uniform": measured.trace * points / uniform,
                     "noise_scale": points * measured.trace / measured.mean_square if measured.mean_square > 0 else float("nan")})
    return rows


def between_within(term: Term, trial: Trial, parameters: list[torch.Tensor], dtype: torch.dtype, device: torch.device,
                   *, batch: int, repeats: int, strata: int, seed: int) -> dict:
    """The fitted ``sigma_b^2, sigma_w^2`` of the gradient over ``strata`` strata, the predicted
    trace of each design ``(M, A)`` with ``M A = batch``, and a check design measured."""
    def measure(m: int, a: int) -> float:
        sampler = TwoStageSampler(term.rule, device, seed + m, strata=strata, strata_drawn=m, per_stratum=a)
        return gradient_noise(term, sampler, trial, parameters, dtype, m * a, repeats).trace


    per = [a for a in (1, 2, 4, 8, 16, 32, 64) if batch % a == 0]
    # designs of many strata (M >= batch / 8): with few strata a rare stratum that holds a peak
    # makes the variance heavy-tailed, and R batches cannot estimate it
    usable = [a for a in per if a <= 8] or per[:1]
    fitted = [(batch // usable[1 % len(usable)], usable[1 % len(usable)]), (batch // usable[-1], usable[-1])]
    sigma_b, sigma_w = fit_between_within(fitted, [measure(m, a) for m, a in fitted])
    middle = usable[len(usable) // 2] if len(usable) > 2 else usable[0]
    check = (batch // middle, middle)
    designs = [{"M": batch // a, "A": a, "predicted_trace": sigma_b / (batch // a) + sigma_w / batch} for a in per]
    best = min(designs, key=lambda d: d["predicted_trace"])
    return {"sigma_b2": sigma_b, "sigma_w2": sigma_w, "between_share": sigma_b / (sigma_b + sigma_w), "designs": designs,
            "best": best, "check": {"M": check[0], "A": check[1], "measured_trace": measure(*check),
                                    "predicted_trace": sigma_b / check[0] + sigma_w / batch}}
