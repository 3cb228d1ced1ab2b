"""Minibatch samplers: unbiasedness, epochs without replacement, variance, resumption, no host sync."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vpinn.geometry import Box
from vpinn.quadrature import GaussRule
from vpinn.quadrature.base import ConcatRule
from vpinn.quadrature.sobol import SobolRule
from vpinn.sampling import SAMPLINGS, StratifiedSampler, UniformSampler, make_sampler
from vpinn.sampling.allocation import allocate
from vpinn.sampling.grid import RuleGrid, Tiling
from vpinn.sampling.permutation import round_keys, swap_or_not

CPU = torch.device("cpu")
BOX = Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
RULE = GaussRule(BOX.volume_map(), (20, 20, 20), 2)  # N = 64,000
#: every sampler configuration, as (sampling, allocation)
KINDS = [("uniform", ""), ("stratified", "proportional"), ("stratified", "neyman"), ("sobol", ""), ("importance", "")]


def sampler_of(kind, rule=RULE, seed=0, strata=32):
    sampling, allocation = kind
    return make_sampler(sampling, rule, CPU, seed, strata=strata, allocation=allocation or "proportional", refresh_every=10)


def smooth(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x[:, 0]) * torch.sin(3 * x[:, 1]) + x[:, 2] ** 2


def peaked(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-((x - 0.3) ** 2).sum(1) / (2 * 0.08**2))


def estimates(sampler, rule, fn, batch: int, count: int) -> np.ndarray:
    """``count`` batch estimates of the rule sum of ``fn``, feeding each draw's contributions back."""
    out = []
    for _ in range(count):
        index, factor = sampler.sample(batch)
        points = rule.take(index, torch.float64)
        contributions = points.weights * fn(points.points)
        sampler.observe(contributions)
        assert torch.isfinite(torch.as_tensor(factor)).all()
        out.append(float((factor * contributions).sum()))
    return np.array(out)


def exact_sum(rule, fn) -> float:
    return float(rule.total(lambda b: fn(b.points), 10**5, "cpu", torch.float64))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(filter(None, k)))
@pytest.mark.parametrize("fn", [smooth, peaked], ids=["smooth", "peaked"])
def test_every_sampler_is_unbiased(kind, fn):
    """The mean of 2,100 batch estimates matches the full rule sum within 4 standard errors
    (2,100 batches of 96 points: not whole epochs, so epoch samplers cannot be exact by accident)."""
    full = exact_sum(RULE, fn)
    values = estimates(sampler_of(kind), RULE, fn, batch=96, count=2100)
    standard_error = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - full) < 4 * standard_error
    assert standard_error < 2e-2 * abs(full)  # the test has power


@pytest.mark.parametrize("rule", [SobolRule(BOX.volume_map(), 5000, seed=1),
                                  ConcatRule([GaussRule(BOX.face_map(f), (6, 6), 2) for f in ("xmin", "zmax")])],
                         ids=["sobol-rule", "faces"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(filter(None, k)))
def test_samplers_are_unbiased_on_rules_without_cells(kind, rule):
    full = exact_sum(rule, smooth)
    values = estimates(sampler_of(kind, rule, strata=8), rule, smooth, batch=48, count=2000)
    assert abs(values.mean() - full) < 4 * values.std(ddof=1) / np.sqrt(len(values))


def test_structured_samplers_reduce_the_variance_of_a_smooth_integrand():
    """Stratified and Sobol batches spread over the domain: far below uniform's variance."""
    var = {k: estimates(sampler_of(k, seed=4), RULE, smooth, batch=128, count=400).var() for k in KINDS}
    uniform = var[("uniform", "")]
    assert var[("stratified", "proportional")] < 0.5 * uniform
    assert var[("sobol", "")] < 0.1 * uniform


@pytest.mark.parametrize("size", [1, 2, 3, 17, 1000, 4099])
def test_each_uniform_epoch_visits_every_point_once(size):
    """Batches of uneven sizes form one stream; each run of N indices in it is a permutation."""
    sampler = UniformSampler(size, "cpu", seed=5)
    stream, sizes = [], [1, size // 3 + 1, 7]
    while sum(len(b) for b in stream) < 3 * size:
        stream.append(sampler.sample(sizes[len(stream) % 3])[0])
    flat = torch.cat(stream).tolist()
    for epoch in range(3):
        assert sorted(flat[epoch * size : (epoch + 1) * size]) == list(range(size))


def test_a_uniform_batch_of_the_whole_rule_is_the_whole_rule():
    """After 300 points of an epoch of 1,000, a batch of 1,000 is one fresh epoch (the exact sum,
    weight 1), not the tail of one permutation and the head of the next."""
    sampler = UniformSampler(1000, "cpu", seed=5)
    sampler.sample(300)
    for _ in range(2):
        indices, weight = sampler.sample(1000)
        assert sorted(indices.tolist()) == list(range(1000)) and weight == 1.0
    assert sampler.epochs == 3.0  # the first epoch's last 700 points were skipped


def test_a_stratified_epoch_visits_every_point_once_and_every_batch_every_stratum():
    rule = GaussRule(BOX.volume_map(), (6, 6, 6), 2)  # 1,728 points
    sampler = StratifiedSampler(rule, CPU, seed=2, strata=27)
    strata, batch = sampler.tiling.count, 4 * 27
    draws = [sampler.sample(batch)[0] for _ in range(rule.size // batch)]
    assert sorted(torch.cat(draws).tolist()) == list(range(rule.size))
    for index in draws:  # four points in every stratum
        assert torch.bincount(sampler.tiling.stratum_of(index), minlength=strata).tolist() == [4] * strata


def test_swap_or_not_is_a_bijection_of_any_size():
    for n in (1, 7, 1000, 4099):
        image = swap_or_not(torch.arange(n), round_keys(3, 1, n), n)
        assert sorted(image.tolist()) == list(range(n))
    assert not torch.equal(swap_or_not(torch.arange(1000), round_keys(3, 1, 1000), 1000), torch.arange(1000))


def test_the_tiling_inverts_and_covers_the_lattice():
    tiling = Tiling(RuleGrid.of(RULE), 64)
    assert tiling.count == 64 and tiling.count * tiling.size == RULE.size
    stratum = torch.arange(tiling.count).repeat_interleave(tiling.size)
    local = torch.arange(tiling.size).repeat(tiling.count)
    index = tiling.index(stratum, local)
    assert sorted(index.tolist()) == list(range(RULE.size))
    assert torch.equal(tiling.stratum_of(index), stratum)
    # a stratum is a compact box: its points span 1/4 of the domain per axis
    points = RULE.take(index[: tiling.size], torch.float64).points
    assert torch.all(points.max(0).values - points.min(0).values < 0.25)


def test_allocation_is_integer_positive_and_exact():
    counts = allocate(100, torch.tensor([0.0, 1.0, 2.0, 3.0, 0.5]))
    assert counts.sum() == 100 and counts.min() >= 1
    # one each, then 95 points by share: ideal 0, 14.6, 29.2, 43.8, 7.3; the two largest remainders round up
    assert counts.tolist() == [1, 16, 30, 45, 8]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(filter(None, k)))
def test_resumed_samplers_draw_the_same_batches(kind):
    first = sampler_of(kind, seed=1)
    estimates(first, RULE, peaked, batch=64, count=23)
    second = sampler_of(kind, seed=1)
    second.load_state_dict(first.state_dict())
    for _ in range(15):
        (a, fa), (b, fb) = first.sample(64), second.sample(64)
        assert torch.equal(a, b) and torch.equal(torch.as_tensor(fa), torch.as_tensor(fb))
        contributions = RULE.take(a, torch.float64).weights * peaked(RULE.take(a, torch.float64).points)
        first.observe(contributions)
        second.observe(contributions)


def test_uniform_variance_scales_as_one_over_b():
    small = estimates(UniformSampler(RULE.size, "cpu", 2), RULE, smooth, batch=64, count=1500).var(ddof=1)
    large = estimates(UniformSampler(RULE.size, "cpu", 3), RULE, smooth, batch=640, count=1500).var(ddof=1)
    # Without replacement the variance is (1 - (b-1)/(N-1)) sigma^2 / b: ratio ~ 10.09 here.
    assert 8.0 < small / large < 12.5


class ReadBackDetector(TorchDispatchMode):
    """Fails on every op that reads a device value back to the host: ``.item()`` / ``int()``
    (``_local_scalar_dense``), ``nonzero``, ``masked_select`` and indexing with a boolean mask."""

    FORBIDDEN = {"_local_scalar_dense", "nonzero", "masked_select"}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.FORBIDDEN:
            raise AssertionError(f"{name}: a read-back to the host")
        if name in ("index", "index_put", "index_put_"):
            indices = args[1] if len(args) > 1 else []
            if any(t is not None and t.dtype == torch.bool for t in indices):
                raise AssertionError(f"{name} with a boolean mask: a read-back to the host")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(filter(None, k)))
def test_samplers_read_nothing_back_to_the_host(kind):
    """A whole epoch of draws (and the adaptive samplers' learning) under the detector."""
    rule = GaussRule(BOX.volume_map(), (8, 8, 8), 2)  # 4,096 points
    sampler = sampler_of(kind, rule, strata=16)
    contributions = torch.rand(64, dtype=torch.float64)
    with ReadBackDetector():
        for _ in range(rule.size // 64 + 3):
            sampler.sample(64)
            sampler.observe(contributions)


def test_the_detector_catches_a_read_back():
    with pytest.raises(AssertionError, match="read-back"), ReadBackDetector():
        x = torch.arange(10)
        x[x > 4]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.set_sync_debug_mode checks real device syncs")
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_samplers_do_not_synchronise_on_cuda(sampling):
    rule = GaussRule(BOX.volume_map(), (8, 8, 8), 2)
    sampler = make_sampler(sampling, rule, torch.device("cuda"), 0, strata=16, allocation="neyman")
    sampler.sample(64)  # tables (the Sobol net) are built at the first draw
    contributions = torch.rand(64, dtype=torch.float64, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(100):
            sampler.sample(64)
            sampler.observe(contributions)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_batches_the_sampler_cannot_draw_are_refused():
    sampler = StratifiedSampler(RULE, CPU, seed=0, strata=64)
    with pytest.raises(ValueError, match="multiple of 64"):
        sampler.sample(100)


def test_a_state_of_another_sampler_is_refused():
    uniform, stratified = sampler_of(("uniform", "")), sampler_of(("stratified", "proportional"))
    with pytest.raises(ValueError, match="kind 'uniform', not 'stratified-proportional'"):
        stratified.load_state_dict(uniform.state_dict())
    with pytest.raises(ValueError, match="size 1000, not 64000"):
        uniform.load_state_dict(UniformSampler(1000, "cpu", 0).state_dict())
