"""Batch control and noise diagnostics: the half-batch noise estimates, the SNR-driven batch
growth, micro-batches, learning-rate coupling, automatic clipping and the two-stage variance model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import assembled, trainer_for
from test_sampling import RULE, peaked
from test_train import Interrupt, stop_at
from vpinn.sampling.two_stage import TwoStageSampler, fit_between_within
from vpinn.train.batching import BatchPlan, split
from vpinn.train.checkpoint import load_checkpoint
from vpinn.train.estimate import flat_gradient, minibatch_backward
from vpinn.train.noise import noise_statistics


def test_half_batch_noise_estimates_are_unbiased():
    """Synthetic gradients g = mu + noise of known per-point covariance: the averaged estimates
    of tr Cov(G), |E g|^2 match the truth within 4 standard errors."""
    generator = torch.Generator().manual_seed(0)
    mu, scale, halves = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 1.0, 2.0]), (96, 160)
    true_trace = float(scale.square().sum()) / sum(halves)  # tr Σ / b
    traces, signals = [], []
    for _ in range(4000):
        g1, g2 = (mu + scale * torch.randn(3, generator=generator, dtype=torch.float64) / math.sqrt(h) for h in halves)
        stats = noise_statistics(g1, g2, halves)
        traces.append(float(stats["grad_trace"]))
        signals.append(float(stats["grad_signal"]))
    for values, truth in ((traces, true_trace), (signals, float(mu.square().sum()))):
        values = np.array(values)
        assert abs(values.mean() - truth) < 4 * values.std(ddof=1) / math.sqrt(len(values))


class Fixed:
    granule, minimum = 1, 1


def test_the_batch_doubles_when_the_snr_falls_below_the_threshold_and_scales_the_lr():
    plan = BatchPlan([512, 64], [Fixed(), Fixed()], maximum=2048, micro=10**9, auto=True, threshold=1.0)
    high = {"grad_trace": torch.tensor(0.1), "grad_signal": torch.tensor(1.0)}  # SNR 10
    low = {"grad_trace": torch.tensor(1.0), "grad_signal": torch.tensor(0.2)}  # SNR 0.2
    assert plan.update(high, []) is None and plan.update(high, []) is None and plan.batches == [512, 64]
    for _ in range(6):
        plan.update(low, [])
    assert plan.batches == [2048, 256]  # doubled twice (two diagnostics between changes), then capped
    assert plan.lr_factor() == pytest.approx(2.0)  # sqrt(2048 / 512)
    plan.lr_scaling = "linear"
    assert plan.lr_factor() == pytest.approx(4.0)


def test_neyman_allocation_splits_the_batch_by_the_terms_noise():
    plan = BatchPlan([600, 600], [Fixed(), Fixed()], maximum=10**6, micro=10**9, term_allocation="neyman")
    note = plan.update({"grad_trace": torch.tensor(1.0), "grad_signal": torch.tensor(1.0)},
                       [torch.tensor(3.0), torch.tensor(1.0)])
    assert plan.batches == [900, 300] and "Neyman" in note


def test_split_gives_granule_multiples_summing_to_the_total():
    assert split(96, 4, 8) == [24, 24, 24, 24]
    assert split(40, 3, 8) == [16, 16, 8]
    assert split(8, 5, 8) == [8]


def test_micro_batches_give_the_gradient_of_one_batch(small_problem):
    """The same points drawn as one batch or as micro-batches: the same gradient (float64)."""
    gradients = []
    for micro in (10**9, 100):
        _, assembly = assembled(small_problem)
        parameters = list(assembly.field.parameters())
        plan = BatchPlan([t.batch for t in assembly.terms], assembly.samplers, maximum=4096, micro=micro)
        minibatch_backward(assembly.terms, assembly.samplers, assembly.trial, torch.float64, plan.batches, plan.pieces)
        gradients.append(flat_gradient(parameters))
    assert len(plan.pieces(0)) == 3  # 256 points as 86 + 85 + 85
    assert torch.allclose(gradients[0], gradients[1], rtol=1e-12, atol=1e-14)


def test_a_diagnosed_step_takes_the_same_step_as_a_plain_one(small_problem):
    """With the uniform sampler the two halves are the step's own points: diagnosing every step
    or never gives the same weights (up to rounding)."""
    weights = []
    for every in (0, 1):
        trainer = trainer_for(small_problem, {"train.dtype": "float64", "train.log_every": 5})
        trainer.phases[0].optimizer.diagnose_every = every
        trainer.run()
        weights.append(torch.cat([p.detach().reshape(-1) for p in trainer.network.parameters()]))
    assert torch.allclose(weights[0], weights[1], rtol=1e-9, atol=1e-12)


def test_history_carries_the_noise_columns(small_problem):
    trainer = trainer_for(small_problem, {"train.clip": "auto"})
    trainer.run()
    row = trainer.history[-1]
    assert row["grad_trace"] > 0 and math.isfinite(row["snr"]) and row["noise_scale"] != 0
    assert 0 <= row["clip_rate"] <= 1
    assert any(r["clip_rate"] > 0 for r in trainer.history)  # the automatic threshold acts


def test_auto_batch_with_stratified_sampling_resumes_bit_identically(small_problem, tmp_path):
    overrides = {"train.batch": "auto", "train.batch_start": 64, "train.sampling": "stratified", "train.strata": 16,
                 "train.clip": "auto", "train.steps": 40, "train.log_every": 2, "train.snr_threshold": 50.0}
    whole = trainer_for(small_problem, overrides)
    whole.run()
    assert whole.phases[0].optimizer.plan.batches[0] > 64  # the batch grew
    first = trainer_for(small_problem, overrides, checkpoint=tmp_path / "c.pt")
    interrupt = Interrupt(first)
    stop_at(first, 13, lambda t: setattr(interrupt, "on", True))
    first.run()
    second = trainer_for(small_problem, overrides)
    second.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    second.run()
    for a, b in zip(whole.network.parameters(), second.network.parameters()):
        assert torch.equal(a, b)


def test_the_two_stage_model_predicts_the_variance_of_new_designs():
    """Fit sigma_b^2, sigma_w^2 from two (M, A) designs of a peaked integrand; the model predicts
    the measured variance of two other designs within 15 %."""
    def variance(m: int, a: int, seed: int) -> float:
        sampler = TwoStageSampler(RULE, "cpu", seed, strata=64, strata_drawn=m, per_stratum=a)
        values = []
        for _ in range(2500):
            index, factor = sampler.sample(m * a)
            points = RULE.take(index, torch.float64)
            values.append(float(factor * (points.weights * peaked(points.points)).sum()))
        return float(np.var(values, ddof=1))

    fitted = [(4, 32), (32, 2)]
    sigma_b, sigma_w = fit_between_within(fitted, [variance(m, a, k) for k, (m, a) in enumerate(fitted)])
    assert sigma_b > 0 and sigma_w > 0
    for k, (m, a) in enumerate([(8, 8), (16, 1)]):
        predicted = sigma_b / m + sigma_w / (m * a)
        assert variance(m, a, 10 + k) == pytest.approx(predicted, rel=0.15)



@pytest.mark.parametrize("sampling", ["uniform", "importance"])
def test_a_minibatch_gradient_reads_nothing_back(small_problem, sampling):
    """Drawing, evaluating and back-propagating a batch (in micro-batches) needs no read-back to
    the host (the optimiser's own update is torch's; on CUDA its step counters stay on the host)."""
    from test_sampling import ReadBackDetector

    _, assembly = assembled(small_problem, {"train.sampling": sampling})
    plan = BatchPlan([t.batch for t in assembly.terms], assembly.samplers, maximum=4096, micro=100)
    with ReadBackDetector():
        for _ in range(3):
            minibatch_backward(assembly.terms, assembly.samplers, assembly.trial, torch.float64, plan.batches, plan.pieces)


def test_neyman_term_allocation_moves_points_between_the_volume_and_a_neumann_face(tmp_path):
    """A problem with a flux term: the training run re-splits the batch by the terms' noise."""
    from conftest import SMALL_POISSON

    text = SMALL_POISSON.replace('on = "all"\nvalue = "0"', 'on = ["xmin", "xmax", "ymin", "ymax", "zmin"]\nvalue = "auto"\n'
                                 '[[bc]]\ntype = "neumann"\non = ["zmax"]\nvalue = "auto"')
    assert "neumann" in text
    problem = tmp_path / "flux.toml"
    problem.write_text(text)
    trainer = trainer_for(problem, {"train.term_allocation": "neyman", "train.boundary_batch": 256})
    trainer.run()
    plan = trainer.phases[0].optimizer.plan
    assert sum(plan.batches) == 512 and plan.batches != [256, 256]
    assert any("Neyman" in note for note in trainer.phases[0].optimizer.notes)
    assert all(math.isfinite(r["loss"]) for r in trainer.history)
