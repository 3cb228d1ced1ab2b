"""Uniform minibatch sampler: epochs without replacement, unbiasedness, 1/b variance, resumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpinn.geometry import Box
from vpinn.quadrature import GaussRule
from vpinn.sampling import UniformSampler, feistel_permute


@pytest.mark.parametrize("size", [1, 2, 3, 17, 1000, 4099])
def test_each_epoch_visits_every_point_once(size):
    """Batches of uneven sizes form one stream; each run of N indices in it is a permutation."""
    sampler = UniformSampler(size, "cpu", seed=5)
    stream, sizes = [], [1, size // 3 + 1, 7]
    while sum(len(b) for b in stream) < 3 * size:
        stream.append(sampler.sample(sizes[len(stream) % 3])[0])
    flat = torch.cat(stream).tolist()
    for epoch in range(3):
        assert sorted(flat[epoch * size : (epoch + 1) * size]) == list(range(size))


def test_feistel_is_a_bijection():
    values = torch.arange(2**11)
    image = feistel_permute(values, [12345, 678, 91011], 11)
    assert sorted(image.tolist()) == values.tolist() and not torch.equal(image, values)


def test_resumed_sampler_draws_the_same_batches():
    first = UniformSampler(1000, "cpu", seed=1)
    for _ in range(7):
        first.sample(300)
    state = first.state_dict()
    second = UniformSampler(1000, "cpu", seed=99)
    second.load_state_dict(state)
    for _ in range(5):
        assert torch.equal(first.sample(300)[0], second.sample(300)[0])


def estimates(rule, fn, batch: int, count: int, seed: int = 0) -> np.ndarray:
    sampler = UniformSampler(rule.size, "cpu", seed)
    out = []
    for _ in range(count):
        index, factor = sampler.sample(batch)
        points = rule.take(index, torch.float64)
        out.append(float(factor * (points.weights * fn(points.points)).sum()))
    return np.array(out)


def smooth(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x[:, 0]) * torch.sin(3 * x[:, 1]) + x[:, 2] ** 2


RULE = GaussRule(Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).volume_map(), (20, 20, 20), 2)  # N = 64,000


def test_batch_estimates_are_unbiased():
    """The mean of many batch estimates matches the full rule sum within 4 standard errors."""
    full = float(RULE.total(lambda b: smooth(b.points), 10**5, "cpu", torch.float64))
    values = estimates(RULE, smooth, batch=100, count=3000)
    standard_error = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - full) < 4 * standard_error
    assert standard_error < 1e-2 * abs(full)  # the test has power: the error bar is tight


def test_variance_scales_as_one_over_b():
    small = estimates(RULE, smooth, batch=64, count=1500, seed=2).var(ddof=1)
    large = estimates(RULE, smooth, batch=640, count=1500, seed=3).var(ddof=1)
    # Without replacement the variance is (1 - (b-1)/(N-1)) sigma^2 / b: ratio ~ 10.09 here.
    assert 8.0 < small / large < 12.5
