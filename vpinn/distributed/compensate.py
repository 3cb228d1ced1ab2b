"""``train.compensate``: a batch large enough that dithered gradients train as exact ones do.

Dithered quantisation (:mod:`vpinn.distributed.dither`) adds to the global gradient estimate
independent, zero-mean noise of variance ``K delta_t^2 / 12`` on the coordinates of parameter
tensor t; ``sigma_q^2`` is its mean over all coordinates.  With
``sigma_s^2`` the sampling variance per coordinate of that estimate at the per-rank batch b,
raising the batch to ``b (1 + r)``, ``r = sigma_q^2 / sigma_s^2``, lowers the sampling variance
to ``sigma_s^2 / (1 + r)``, so that the total, ``sigma_s^2 (1 / (1 + r) + r)``, equals the
uncompressed ``sigma_s^2`` to first order in r.

Both variances are measured once, before training, at the initial network, over ``rounds``
independent global batches, each from its own seeded sampler (batches of one sampler's epoch
are disjoint and so correlated; the training batches are left untouched): ``sigma_s^2`` is the mean over the coordinates of the sample variance of the
exactly summed gradient estimates, and ``delta_t`` are the steps the dither hook would take
for them (each tensor's largest magnitude over the ranks divided by ``2^(bits-1) - 1``).  A process on its
own sends nothing, so there ``sigma_q^2 = 0`` and the batch stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vpinn.distributed import dither
from vpinn.distributed.sharding import ShardedSampler
from vpinn.sampling import UniformSampler
from vpinn.train.estimate import flat_gradient, minibatch_loss

#: seeds of the calibration samplers: train.seed + SEED_OFFSET * (1 + round) + term index
SEED_OFFSET = 7919


@dataclass(frozen=True)
class Compensation:
    """The measured variances per coordinate and the batch factor ``1 + sigma_q^2 / sigma_s^2``."""

    sampling_variance: float
    quantisation_variance: float

    @property
    def factor(self) -> float:
        return 1.0 + self.quantisation_variance / self.sampling_variance


def calibrate(assembly, bits: int, seed: int, rounds: int = 8) -> Compensation:
    """Measure ``sigma_s^2`` and ``sigma_q^2`` for ``assembly`` (this rank of its group) at its
    current network and batch sizes, for dithering to ``bits`` bits (see the module docstring)."""
    group, parameters = assembly.group, list(assembly.field.parameters())
    sizes = [p.numel() for p in parameters]
    sums, steps = [], []
    for round_ in range(rounds):
        samplers = [UniformSampler(t.rule.size, assembly.device, seed + SEED_OFFSET * (1 + round_) + k)
                    for k, t in enumerate(assembly.terms)]
        if group.size > 1:
            samplers = [ShardedSampler(s, group) for s in samplers]
        for p in parameters:
            p.grad = None
        loss, _ = minibatch_loss(assembly.terms, samplers, assembly.trial, assembly.dtype)
        loss.backward()
        local = flat_gradient(parameters).double()
        steps.append(dither.per_coordinate(dither.step_size(group.max_(dither.tensor_maxima(local, sizes)), bits), sizes))
        sums.append(group.sum_(local))
    for p in parameters:
        p.grad = None
    sampling = float(torch.stack(sums).var(dim=0).mean())
    quantisation = float(group.size * (torch.stack(steps) ** 2).mean() / 12) if group.size > 1 else 0.0
    return Compensation(sampling, quantisation)
