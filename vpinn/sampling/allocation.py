"""Integer allocation of a batch over strata, on the device: Neyman's rule in fixed shapes.

Stratified estimation with ``A_s`` points in stratum s of ``n_s`` points and within-stratum
standard deviation ``sigma_s`` has variance ``sum_s n_s^2 sigma_s^2 / A_s``; for a budget
``sum A_s = b`` it is least for ``A_s ∝ n_s sigma_s`` (Neyman 1934).  :func:`allocate` rounds that
to integers with at least one point per stratum (unbiasedness needs every stratum sampled) by the
largest-remainder rule, without reading anything back to the host.
"""

from __future__ import annotations

import torch


def allocate(total: int, share: torch.Tensor) -> torch.Tensor:
    """Integers (M,) >= 1 summing to ``total`` (>= M), close to ``total * share`` (share (M,) >= 0,
    any scale; all-zero shares allocate evenly)."""
    count = share.numel()
    share = share.double()
    share = torch.where(share.sum() > 0, share / share.sum().clamp_min(1e-300), torch.full_like(share, 1.0 / count))
    ideal = (total - count) * share
    base = ideal.floor()
    remainder = (total - count) - base.sum()
    order = torch.argsort(ideal - base, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(count, device=share.device)
    return (1 + base + (rank < remainder).double()).long()


def neyman_shares(sizes: torch.Tensor, deviations: torch.Tensor, mix: float) -> torch.Tensor:
    """Shares ``∝ n_s sigma_s``, mixed with proportional ``∝ n_s`` by ``mix`` (robust when a
    stratum's running ``sigma_s`` estimate is still near 0)."""
    neyman = sizes * deviations
    neyman = neyman / neyman.sum().clamp_min(1e-300)
    return (1 - mix) * neyman + mix * sizes / sizes.sum()
