"""Gradient-noise diagnostics from two independent half-batch gradients.

Split a step's batch of b points into draws of ``h1 + h2 = b`` points; their gradient estimates
``g1, g2`` are independent and unbiased, with covariances ``Σ / h1`` and ``Σ / h2`` (``Σ`` the
per-point covariance of the gradient estimate).  Then

* ``E |g1 - g2|^2 = tr Σ (1/h1 + 1/h2)``, so ``tr Σ ≈ |g1 - g2|^2 / (1/h1 + 1/h2)``, and the
  step's gradient ``G = (h1 g1 + h2 g2) / b`` has ``tr Cov(G) = tr Σ / b`` (``trace``);
* ``E |G|^2 = |E g|^2 + tr Σ / b``, so ``signal = |G|^2 - tr Σ / b`` estimates ``|E g|^2``;
* the signal-to-noise ratio of the update ``snr = signal / trace`` and the gradient noise scale
  ``B = tr Σ / |E g|^2`` (McCandlish et al. 2018: the batch at which noise and signal balance;
  keeping the SNR constant needs ``b ∝ B``).

One pair of halves gives unbiased but noisy ``trace`` and ``signal``; the batch controller
averages them over diagnostics.  Everything stays on the device.
"""

from __future__ import annotations

import torch


def noise_statistics(first: torch.Tensor, second: torch.Tensor, sizes: tuple[int, int]) -> dict[str, torch.Tensor]:
    """``trace``, ``signal``, ``snr`` and ``noise_scale`` (0-d float64 tensors) from the flat
    gradients of two independent draws of ``sizes = (h1, h2)`` points."""
    h1, h2 = sizes
    first, second = first.double(), second.double()
    per_point = (first - second).square().sum() / (1 / h1 + 1 / h2)
    mean = (h1 * first + h2 * second) / (h1 + h2)
    trace = per_point / (h1 + h2)
    signal = mean.square().sum() - trace
    return {"grad_trace": trace, "grad_signal": signal, "snr": signal / trace, "noise_scale": per_point / signal}
