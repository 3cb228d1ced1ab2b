"""Gradient-noise diagnostics from two independent half-batch gradients.

Split a step's batch of b points into draws of ``h1 + h2 = b`` points; their gradient estimates
``g1, g2`` are independent and unbiased, with covariances ``Σ / h1`` and ``Σ / h2`` (``Σ`` the
per-point covariance of the gradient estimate).  Then

* ``E |g1 - g2|^2 = tr Σ (1/h1 + 1/h2)``, so ``tr Σ ≈ |g1 - g2|^2 / (1/h1 + 1/h2)``, and the
  step's gradient ``G = (h1 g1 + h2 g2) / b`` has ``tr Cov(G) = tr Σ / b`` (``trace``);
* when the halves are disjoint draws without replacement from a population of N points (the
  uniform sampler's epochs), ``Cov(g1) = Σ (1/h1 - 1/N)`` and ``Cov(g1, g2) = -Σ / N`` (``Σ``
  now the population's covariance with divisor N - 1): the first identity holds unchanged, and
  ``tr Cov(G) = tr Σ (1/b - 1/N)``, the finite-population correction; a batch of the whole rule
  is the exact sum, with no noise (``trace = 0``, infinite SNR), while ``B`` stays the
  population's noise scale;
* ``E |G|^2 = |E g|^2 + tr Σ / b``, so ``signal = |G|^2 - tr Σ / b`` estimates ``|E g|^2``;
* the signal-to-noise ratio of the update ``snr = signal / trace`` and the gradient noise scale
  ``B = tr Σ / |E g|^2`` (McCandlish et al. 2018: the batch at which noise and signal balance;
  keeping the SNR constant needs ``b ∝ B``).

The same two quantities in Adam's metric ``P = diag(1 / (sqrt(v) + eps))`` (``v`` its second
moments) give ``adam_snr = (|G|_P^2 - tr(P Σ) / b) / (tr(P Σ) / b)``, the SNR of the update Adam
takes: the plain SNR is dominated by the few coordinates with the largest gradients, while Adam
moves every coordinate by about the learning rate, so its progress stops when the noise swamps
the signal coordinate by coordinate (``adam_snr`` near or below 1), whatever the plain SNR.

One pair of halves gives unbiased but noisy ``trace`` and ``signal``; the batch controller
averages them over diagnostics.  Everything stays on the device.
"""

from __future__ import annotations

import torch


def noise_statistics(first: torch.Tensor, second: torch.Tensor, sizes: tuple[int, int],
                     metric: torch.Tensor | None = None, population: int | None = None) -> dict[str, torch.Tensor]:
    """``grad_trace``, ``grad_signal``, ``snr`` and ``noise_scale`` (0-d float64 tensors) from the
    flat gradients of two draws of ``sizes = (h1, h2)`` points, independent, or disjoint draws
    without replacement from ``population`` points; with ``metric`` (the flat diagonal of Adam's
    ``P``, same shape as the gradients) also ``adam_trace`` (``tr(P Cov G)``), ``adam_signal``
    and ``adam_snr``."""
    h1, h2 = sizes
    first, second = first.double(), second.double()
    difference, mean = (first - second).square(), (h1 * first + h2 * second) / (h1 + h2)
    inverse = max(0.0, 1 / (h1 + h2) - 1 / population) if population else 1 / (h1 + h2)  # tr Cov(G) / tr Σ
    per_point = difference.sum() / (1 / h1 + 1 / h2)
    trace = per_point * inverse
    signal = mean.square().sum() - trace
    statistics = {"grad_trace": trace, "grad_signal": signal, "snr": signal / trace, "noise_scale": per_point / signal}
    if metric is not None:
        trace_p = (metric.double() * difference).sum() / (1 / h1 + 1 / h2) * inverse
        signal_p = (metric.double() * mean.square()).sum() - trace_p
        statistics.update(adam_trace=trace_p, adam_signal=signal_p, adam_snr=signal_p / trace_p)
    return statistics
