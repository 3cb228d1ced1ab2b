"""Subtractive-dithered uniform quantisation of gradients, summed over ranks.

With a common step ``delta`` on all K ranks, rank r sends the integer codes

    k_r = round(g_r / delta + u_r),   u_r ~ U(-1/2, 1/2) per coordinate,

the codes are summed by an ordinary all-reduce, and every rank recovers

    sum_r g^_r = delta (sum_r k_r - sum_r u_r).

The dithers ``u_r`` of all ranks come from one generator seeded identically everywhere (from
the run's seed and the step), so each rank can subtract their sum exactly.  Then
``g^_r - g_r = delta (round(y) - y)`` with ``y = g_r / delta + u_r``, and for a uniform dither
this error is uniform on ``(-delta/2, delta/2)`` and independent of ``g_r`` (Schuchman's
condition): the quantised sum is unbiased and adds variance ``K delta^2 / 12`` per coordinate.

Each parameter tensor t has its own step ``delta_t = max_r |g_{r,t}|_inf / L`` with
``L = 2^(bits-1) - 1``, which keeps every code in ``[-L, L]`` (one step for the whole gradient
would be set by its largest entries and swamp the tensors whose gradients are small).
The codes travel in the narrowest type in which their sum is exact: int8 while ``K L <= 127``,
float16 (exact for integers up to 2048) while ``K L <= 2048``, else float32.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def levels(bits: int) -> int:
    """``L = 2^(bits-1) - 1``: codes lie in ``[-L, L]``."""
    return (1 << (bits - 1)) - 1


def transport_dtype(bits: int, ranks: int) -> torch.dtype:
    """The narrowest dtype in which the sum of ``ranks`` codes of ``bits`` bits is exact."""
    top = ranks * levels(bits)
    return torch.int8 if top <= 127 else torch.float16 if top <= 2048 else torch.float32


def step_size(largest: Tensor, bits: int) -> Tensor:
    """``delta`` for coordinates of magnitude at most ``largest`` (device values; never 0)."""
    return (largest / levels(bits)).clamp_min(torch.finfo(largest.dtype).tiny)


def tensor_maxima(flat: Tensor, sizes: list[int]) -> Tensor:
    """``max |g_t|`` (T,) of each parameter tensor's segment of the flat gradient (sizes sum to P)."""
    return torch.stack([segment.abs().amax() for segment in flat.split(sizes)])


def per_coordinate(steps: Tensor, sizes: list[int]) -> Tensor:
    """The tensors' steps (T,) repeated over their coordinates (P,)."""
    return torch.repeat_interleave(steps, torch.tensor(sizes, device=steps.device), output_size=sum(sizes))


def dithers(generator: torch.Generator, ranks: int, size: int, dtype: torch.dtype, device) -> Tensor:
    """All ranks' dithers (ranks, size), uniform on ``[-1/2, 1/2)``."""
    return torch.rand(ranks, size, generator=generator, dtype=dtype, device=device) - 0.5


def encode(values: Tensor, delta: Tensor, dither: Tensor, dtype: torch.dtype) -> Tensor:
    """The codes ``round(values / delta + dither)`` in the transport ``dtype``."""
    return torch.round(values / delta + dither).to(dtype)


def decode(code_sum: Tensor, delta: Tensor, dither_sum: Tensor) -> Tensor:
    """``delta (sum of codes - sum of dithers)``: the quantised sum, in ``dither_sum``'s dtype."""
    return (code_sum.to(dither_sum.dtype) - dither_sum) * delta
