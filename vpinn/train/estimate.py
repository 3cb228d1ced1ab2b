"""The loss as a minibatch estimate, and exactly over whole rules in chunks.

``minibatch_loss`` samples each term's rule and reweights (unbiased for the rule sum).
``full_loss_backward`` sums every term over its whole rule in chunks of ``chunk`` points and calls
``backward`` per chunk: the parameter gradients accumulate to exactly the gradient of the full
sum, while only one chunk's graph is alive at a time, so peak memory is that of one chunk.
"""

from __future__ import annotations

from typing import Sequence

import torch

from vpinn.physics.base import Term, Trial, integrand
from vpinn.sampling import UniformSampler


def minibatch_loss(
    terms: Sequence[Term], samplers: Sequence[UniformSampler], trial: Trial, dtype: torch.dtype
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unbiased estimate of the loss (a 0-d tensor with graph) and its terms by name."""
    parts = {}
    for term, sampler in zip(terms, samplers):
        index, factor = sampler.sample(term.batch)
        batch = term.rule.take(index, dtype)
        parts[term.name] = factor * (batch.weights * integrand(term.form, trial, batch)).sum()
    return sum(parts.values()), parts


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
