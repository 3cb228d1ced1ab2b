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
from vpinn.train.batching import BatchPlan, doubling_gain, split
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


def test_half_batches_of_one_epoch_give_the_finite_population_noise():
    """Halves drawn without replacement from a population of N vectors (the uniform sampler's
    epochs; b divides N, so both halves of a batch come from one epoch): the averaged trace estimate matches tr S (1/b - 1/N), the exact variance of the
    batch mean (S the population covariance, divisor N - 1), within 4 standard errors; a batch of
    the whole population has no noise (trace 0, infinite SNR) and the population's noise scale."""
    from vpinn.sampling import UniformSampler
    population = torch.randn(256, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.3
    mean = population.mean(0)
    spread = float((population - mean).square().sum()) / (len(population) - 1)  # tr S
    for batch in (64, 128):
        sampler, traces = UniformSampler(len(population), "cpu", seed=2), []
        for _ in range(3000):
            g1, g2 = (population[sampler.sample(batch // 2)[0]].mean(0) for _ in range(2))
            traces.append(float(noise_statistics(g1, g2, (batch // 2, batch // 2), population=len(population))["grad_trace"]))
        traces = np.array(traces)
        truth = spread * (1 / batch - 1 / len(population))
        assert abs(traces.mean() - truth) < 4 * traces.std(ddof=1) / math.sqrt(len(traces))
        assert truth < 0.8 * spread / batch  # the correction matters at these sizes
    sampler = UniformSampler(len(population), "cpu", seed=3)
    sampler.sample(len(population))  # a whole-rule batch starts a fresh epoch: its halves partition it
    g1, g2 = (population[sampler.sample(128)[0]].mean(0) for _ in range(2))
    stats = noise_statistics(g1, g2, (128, 128), population=len(population))
    assert float(stats["grad_trace"]) == 0.0 and math.isinf(float(stats["snr"]))
    assert torch.allclose((g1 + g2) / 2, mean, rtol=0, atol=1e-14)
    assert 0 < float(stats["noise_scale"]) < math.inf


def test_adams_metric_weighs_the_noise_coordinate_by_coordinate():
    """With Adam's metric P the averaged estimates of tr(P Cov G) and |E g|_P^2 match
    sum_j P_j σ_j^2 / b and sum_j P_j μ_j^2 within 4 standard errors, and a metric of ones gives
    the plain statistics: a few large gradient coordinates make the plain SNR large while Adam's,
    which moves every coordinate by about its learning rate, is below 1."""
    generator = torch.Generator().manual_seed(4)
    mu = torch.cat([torch.tensor([30.0]), torch.full((100,), 0.1)]).double()  # one strong coordinate, 100 weak ones
    sigma, halves = torch.full((101,), 8.0, dtype=torch.float64), (32, 32)
    metric = 1 / (mu.square() + sigma.square() / 64).sqrt()  # 1 / sqrt(E g_b^2): Adam's v
    traces, signals = [], []
    for _ in range(4000):
        g1, g2 = (mu + sigma * torch.randn(101, generator=generator, dtype=torch.float64) / math.sqrt(h) for h in halves)
        stats = noise_statistics(g1, g2, halves, metric)
        plain = noise_statistics(g1, g2, halves, torch.ones(101, dtype=torch.float64))
        assert float(plain["adam_trace"]) == pytest.approx(float(plain["grad_trace"]), rel=1e-12)
        assert float(plain["adam_signal"]) == pytest.approx(float(plain["grad_signal"]), rel=1e-12)
        traces.append(float(stats["adam_trace"]))
        signals.append(float(stats["adam_signal"]))
    for values, truth in ((traces, float((metric * sigma.square()).sum()) / 64), (signals, float((metric * mu.square()).sum()))):
        values = np.array(values)
        assert abs(values.mean() - truth) < 4 * values.std(ddof=1) / math.sqrt(len(values))
    plain_snr = float(mu.square().sum()) / (float(sigma.square().sum()) / 64)
    adam_snr = float((metric * mu.square()).sum()) / (float((metric * sigma.square()).sum()) / 64)
    assert plain_snr > 5 and adam_snr < 0.5


def adam_noise(per_point: float, signal: float, batch: int) -> dict[str, torch.Tensor]:
    """Noise statistics with a strong plain signal (no growth by the cost model) and, in Adam's
    metric, tr(P Cov G) = per_point / b and |E g|_P^2 = signal."""
    return {**constant_noise(1.0, 1e6, batch), "adam_trace": torch.tensor(per_point / batch),
            "adam_signal": torch.tensor(signal)}


@pytest.mark.parametrize("threshold, settled", [(1.0, 2048), (4.0, 8192), (0.0, 256)])
def test_auto_batch_grows_until_adams_update_is_no_longer_noise_dominated(threshold, settled):
    """Adam's SNR b |E g|_P^2 / tr(P Σ) with tr(P Σ) / |E g|_P^2 = 1500: from 256 the plan doubles
    while it is below ``snr_threshold`` (1: to 2048, 4: to 8192, 0: never), even where the cost
    model alone would keep the batch (the plain SNR is large)."""
    plan = BatchPlan([256], [Fixed()], maximum=2**20, micro=10**9, auto=True, overhead=4096, snr_threshold=threshold)
    for _ in range(40):
        plan.update(adam_noise(1500.0, 1.0, plan.batches[0]), [])
    assert plan.batches == [settled]
    assert settled == 256 or settled / 2 < threshold * 1500 <= settled


def test_auto_batch_grows_only_to_a_size_the_time_left_allows():
    """The plan's ``fits`` (the rest of the phase ends in time) caps growth that both rules want."""
    plan = BatchPlan([256], [Fixed()], maximum=2**20, micro=10**9, auto=True, overhead=4096, snr_threshold=4.0)
    for _ in range(40):
        plan.update(adam_noise(1500.0, 1.0, plan.batches[0]), [], fits=lambda batch: batch <= 1024)
    assert plan.batches == [1024]


def test_adams_time_forecast_says_which_batches_fit(small_problem, monkeypatch):
    """Adam's forecast: the time per step since the previous diagnostic, scaled by
    (b' + b_o) / (b + b_o), times the steps left; 1 s per step, 60 steps left and 30 s to spare
    allow a factor up to 1.5: b' <= 1.5 * 4352 - 4096 = 2432 from b = 256 with b_o = 4096."""
    import vpinn.train.optimizers.adam as adam_module
    adam = trainer_for(small_problem, {"train.batch": "auto", "train.steps": 80}).phases[0].optimizer
    adam.plan.overhead, adam.plan.batches[0] = 4096, 256
    clock = iter([0.0, 10.0, 11.0])
    monkeypatch.setattr(adam_module.time, "perf_counter", lambda: next(clock))
    adam.deadline, adam.count = 100.0, 10
    assert adam._fits_in_time()(2**30)  # no measurement yet
    adam.count = 20  # 10 steps in 10 s; 60 left end at 70 s
    fits = adam._fits_in_time()
    assert fits(512) and fits(2432)
    assert not fits(2433) and not fits(8192)
    adam.deadline, adam.count = None, 21
    assert adam._fits_in_time()(2**30)  # no deadline: anything fits


class Fixed:
    granule, minimum = 1, 1


def gain_per_second(batch: float, noise_scale: float, overhead: float) -> float:
    """Adam's gain per step at its best learning rate, b / (b + B), over the step's cost b + b_o."""
    return batch / (batch + noise_scale) / (batch + overhead)


def test_the_doubling_gain_is_the_ratio_of_the_gains_per_second():
    for batch, noise_scale, overhead in ((1024, 4096, 4096), (256, 64, 4096), (8192, 10**6, 2**19)):
        ratio = gain_per_second(2 * batch, noise_scale, overhead) / gain_per_second(batch, noise_scale, overhead)
        assert doubling_gain(batch, batch / noise_scale, overhead) == pytest.approx(ratio, rel=1e-12)
    assert doubling_gain(1024, 0.25, 4096) == pytest.approx(2 * 1.25 / 1.5 * 5120 / 6144, rel=1e-12)
    assert doubling_gain(1024, -3.0, 4096) == pytest.approx(2 * 5120 / 6144, rel=1e-12)  # signal unresolved: s = 0


def constant_noise(per_point: float, signal: float, batch: int) -> dict[str, torch.Tensor]:
    """Noise statistics of a batch of ``batch`` points: tr Cov = per_point / b, |E g|^2 = signal."""
    return {"grad_trace": torch.tensor(per_point / batch), "grad_signal": torch.tensor(signal)}


@pytest.mark.parametrize("noise_scale, settled", [(64.0, 512), (1000.0, 2048), (10000.0, 8192), (-1.0, 16384)])
def test_auto_batch_settles_where_the_gain_per_second_peaks(noise_scale, settled):
    """b_o = 4096, from 256: B = 64, 1000 and 10,000 settle at 512, 2048 and 8192, the powers of two
    beside b* = sqrt(B b_o) = 512, 2024 and 6400 with the larger gain per second; an unresolved
    signal (|E g|^2 < 0 measured) grows to the maximum, 16,384."""
    plan = BatchPlan([256, 64], [Fixed(), Fixed()], maximum=16384, micro=10**9, auto=True, overhead=4096)
    signal = 1.0 if noise_scale > 0 else -0.1
    for _ in range(40):
        plan.update(constant_noise(abs(noise_scale), signal, plan.batches[0]), [])
    assert plan.batches == [settled, settled // 4]  # the boundary batch doubles with the volume batch
    if noise_scale > 0:
        rates = {b: gain_per_second(b, noise_scale, 4096) for b in (settled // 2, settled, 2 * settled)}
        assert rates[settled] == max(rates.values())
    assert plan.lr_factor() == 1.0  # lr_scaling = "none", the default
    plan.lr_scaling = "sqrt"
    assert plan.lr_factor() == pytest.approx(math.sqrt(settled / 256))
    plan.lr_scaling = "linear"
    assert plan.lr_factor() == pytest.approx(settled / 256)


def test_auto_batch_on_a_noisy_quadratic_settles_at_the_batch_its_true_noise_scale_predicts():
    """Gradients of a quadratic at a fixed point, g = G + noise of per-point covariance diag(σ²),
    drawn as two half batches and measured by the diagnostics: with B = tr Σ / |G|^2 = 1000 and
    b_o = 4096 the plan settles at 2048, as the exact statistics say (previous test)."""
    generator = torch.Generator().manual_seed(3)
    dimension = 200
    mean = torch.randn(dimension, generator=generator, dtype=torch.float64)
    spread = torch.rand(dimension, generator=generator, dtype=torch.float64) + 0.5
    spread *= math.sqrt(1000.0 * float(mean.square().sum()) / float(spread.square().sum()))  # B = 1000
    plan = BatchPlan([256], [Fixed()], maximum=2**20, micro=10**9, auto=True, overhead=4096)
    measured = []
    for _ in range(60):
        halves = (plan.batches[0] // 2, plan.batches[0] // 2)
        g1, g2 = (mean + spread * torch.randn(dimension, generator=generator, dtype=torch.float64) / math.sqrt(h)
                  for h in halves)
        stats = noise_statistics(g1, g2, halves)
        measured.append(float(stats["noise_scale"]))
        plan.update(stats, [])
    assert plan.batches == [2048]
    assert 700 < float(np.median(measured)) < 1400  # the measured B, from single pairs of halves


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


def test_a_doubling_halves_adams_second_moments(small_problem):
    """Two runs of 3 steps, diagnosing every second: with growth on, the batch doubles after the
    second diagnostic (step 3) and Adam's v (noise part ∝ 1/b) is halved; its m and the weights
    are those of the run that keeps the batch."""
    overrides = {"train.batch": "auto", "train.batch_start": 64, "train.steps": 3, "train.log_every": 2,
                 "train.step_overhead": 10**9, "train.dtype": "float64"}
    optimizers = []
    for grow in (True, False):
        trainer = trainer_for(small_problem, overrides)
        optimizer = trainer.phases[0].optimizer
        optimizer.plan.auto = grow
        trainer.run()
        optimizers.append(optimizer)
    assert [o.plan.batches[0] for o in optimizers] == [128, 64]
    for grown, kept in zip(*(list(o.adam.state.values()) for o in optimizers)):
        assert torch.equal(grown["exp_avg"], kept["exp_avg"])
        assert torch.allclose(grown["exp_avg_sq"], 0.5 * kept["exp_avg_sq"], rtol=1e-15, atol=0)
    for grown, kept in zip(*(o.problem.parameters for o in optimizers)):
        assert torch.equal(grown, kept)


def test_history_carries_the_noise_columns(small_problem):
    trainer = trainer_for(small_problem, {"train.clip": "auto"})
    trainer.run()
    row = trainer.history[-1]
    assert row["grad_trace"] > 0 and math.isfinite(row["snr"]) and row["noise_scale"] != 0
    assert 0 <= row["clip_rate"] <= 1
    assert any(r["clip_rate"] > 0 for r in trainer.history)  # the automatic threshold acts


def test_auto_batch_with_stratified_sampling_resumes_bit_identically(small_problem, tmp_path):
    overrides = {"train.batch": "auto", "train.batch_start": 64, "train.sampling": "stratified", "train.strata": 16,
                 "train.clip": "auto", "train.steps": 40, "train.log_every": 2, "train.step_overhead": 10**9}
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
