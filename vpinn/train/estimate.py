"""The loss as a minibatch estimate, and exactly over whole rules in chunks.

``minibatch_loss`` samples each term's rule and reweights (unbiased for the rule sum);
``minibatch_backward`` does the same in micro-batches, back-propagating each, so that a batch of
any size costs the memory of its largest micro-batch.  Both feed every draw's contributions back
to its sampler (the adaptive samplers learn from them).
``full_loss_backward`` sums every term over its whole rule in chunks of ``chunk`` points and calls
``backward`` per chunk: the parameter gradients accumulate to exactly the gradient of the full
sum, while only one chunk's graph is alive at a time, so peak memory is that of one chunk.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from vpinn.physics.base import Term, Trial, integrand
from vpinn.sampling import Sampler


def sampled_term(term: Term, sampler: Sampler, trial: Trial, dtype: torch.dtype, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of ``points`` points of ``term``: its unbiased estimate of the term (0-d, with
    graph) and the draw's unit estimates ``points * c_j w_j f_j`` (detached, (points,)), each an
    unbiased one-point estimate whose spread is the term's per-point noise."""
    index, factor = sampler.sample(points)
    batch = term.rule.take(index, dtype)
    contributions = batch.weights * integrand(term.form, trial, batch)
    sampler.observe(contributions.detach())
    weighted = factor * contributions
    return weighted.sum(), weighted.detach() * points


def minibatch_loss(
    terms: Sequence[Term], samplers: Sequence[Sampler], trial: Trial, dtype: torch.dtype
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unbiased estimate of the loss (a 0-d tensor with graph) and its terms by name."""
    parts = {term.name: sampled_term(term, sampler, trial, dtype, term.batch)[0] for term, sampler in zip(terms, samplers)}
    return sum(parts.values()), parts


def minibatch_backward(terms: Sequence[Term], samplers: Sequence[Sampler], trial: Trial, dtype: torch.dtype,
                       batches: Sequence[int], pieces: Callable[[int, int], list[int]]
                       ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Back-propagate an unbiased estimate of the loss from ``batches[t]`` points of term t, drawn
    as micro-batches ``pieces(t, batches[t])`` (each weighted by its share of the term's batch);
    gradients accumulate in ``.grad``.  Returns the detached term estimates by name and, per term,
    the standard deviation of its unit estimates (the per-point noise Neyman's rule needs)."""
    parts, spreads = {}, []
    for k, (term, sampler, batch) in enumerate(zip(terms, samplers, batches)):
        total, moments = 0.0, 0.0
        for points in pieces(k, batch):
            estimate, units = sampled_term(term, sampler, trial, dtype, points)
            (estimate * (points / batch)).backward()
            total = total + estimate.detach() * (points / batch)
            moments = moments + torch.stack([units.double().sum(), units.double().square().sum()])
        parts[term.name] = total
        mean = moments[0] / batch
        spreads.append((moments[1] / batch - mean * mean).clamp_min(0).sqrt())
    return parts, spreads


def full_loss_backward(terms: Sequence[Term], trial: Trial, chunk: int, device: torch.device,
                       dtype: torch.dtype) -> torch.Tensor:
    """The exact loss over the terms' whole rules (float64, detached); gradients accumulate in ``.grad``."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    for term in terms:
        for index in term.rule.chunks(chunk, device):
            batch = term.rule.take(index, dtype)
            loss = (batch.weights * integrand(term.form, trial, batch)).sum()
            loss.backward()
            total += loss.detach().double()
    return total


def flat_gradient(parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    """The parameters' ``.grad`` as one flat vector, in the given order (zeros where None)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])


def set_flat_gradient(parameters: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Write ``flat`` (laid out as :func:`flat_gradient`) into the parameters' ``.grad``."""
    start = 0
    for p in parameters:
        p.grad = flat[start: start + p.numel()].reshape(p.shape).to(p.dtype).clone()
        start += p.numel()
