"""Minibatch samplers (``train.sampling``): unbiased, sync-free, seeded, checkpointed.

``uniform`` (epochs without replacement), ``stratified`` (equal boxes of the rule's lattice,
proportional or Neyman allocation), ``sobol`` (randomly shifted Sobol nets) and ``importance``
(a learned per-stratum proposal mixed with uniform).  See :mod:`vpinn.sampling.base` for the
protocol and each module for its estimator.
"""

from __future__ import annotations

import torch

from vpinn.quadrature.base import QuadratureRule
from vpinn.sampling.base import Sampler
from vpinn.sampling.importance import ImportanceSampler
from vpinn.sampling.sobol import SobolSampler
from vpinn.sampling.stratified import StratifiedSampler
from vpinn.sampling.uniform import UniformSampler

#: the names of ``train.sampling``
SAMPLINGS = ("uniform", "stratified", "sobol", "importance")


def make_sampler(kind: str, rule: QuadratureRule, device: torch.device, seed: int, *, strata: int,
                 allocation: str = "proportional", refresh_every: int = 20, mix: float = 0.1) -> Sampler:
    """The sampler ``kind`` for ``rule``; ``strata`` (about how many strata), ``allocation``,
    ``refresh_every`` and ``mix`` apply to the stratified and importance samplers."""
    if kind == "uniform":
        return UniformSampler(rule.size, device, seed)
    if kind == "stratified":
        return StratifiedSampler(rule, device, seed, strata=strata, allocation=allocation, refresh_every=refresh_every, mix=mix)
    if kind == "sobol":
        return SobolSampler(rule, device, seed)
    if kind == "importance":
        return ImportanceSampler(rule, device, seed, strata=strata, refresh_every=refresh_every, mix=mix)
    raise ValueError(f"unknown sampling {kind!r}; choose one of {', '.join(SAMPLINGS)}")


__all__ = ["SAMPLINGS", "ImportanceSampler", "Sampler", "SobolSampler", "StratifiedSampler", "UniformSampler", "make_sampler"]
