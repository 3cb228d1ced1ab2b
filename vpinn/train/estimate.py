"""The loss as a minibatch estimate, and exactly over whole rules in chunks.

``minibatch_loss`` samples each term's rule and reweights (unbiased for the rule sum).
``full_loss_backward`` sums every term over its whole rule in chunks of ``chunk`` points and calls
``backward`` per chunk: the parameter gradients accumulate to exactly the gradient of the full
sum, while only one chunk's graph is alive at a time, so peak memory is that of one chunk.

With several ranks (a :class:`~vpinn.distributed.Group` of size K) every rank samples or sums
its own part (its slice of each global batch; its share of each rule's chunks), and the
gradients and losses are summed over the ranks, so every rank ends with the estimate or exact
sum a single process would compute.  :func:`minibatch_backward` may compress that sum
(``train.compression``); full-rule sums are always exact.
"""

from __future__ import annotations

from typing import Sequence

import torch

from vpinn.distributed import LOCAL, Group, shared_chunks
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


def minibatch_backward(terms: Sequence[Term], samplers: Sequence[UniformSampler], trial: Trial, dtype: torch.dtype,
                       parameters: Sequence[torch.Tensor], group: Group = LOCAL, *, key: int = 0,
                       compress: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`minibatch_loss`, backpropagated into the ``parameters``' ``.grad`` and summed over
    the ranks (through the group's compression hook if ``compress``; ``key`` seeds its draws);
    returns the detached global loss and its terms."""
    loss, parts = minibatch_loss(terms, samplers, trial, dtype)
    loss.backward()
    total, *values = sum_gradients(parameters, group, [loss.detach(), *(v.detach() for v in parts.values())], key=key,
                                   compress=compress)
    return total, dict(zip(parts, values))


def full_loss_backward(terms: Sequence[Term], trial: Trial, chunk: int, device: torch.device,
                       dtype: torch.dtype, group: Group = LOCAL) -> torch.Tensor:
    """The exact loss over the terms' whole rules (float64, detached); gradients accumulate in
    ``.grad``.  With several ranks each sums its share of the chunks, then the gradients of
    ``trial.parameters()`` and the loss are summed over the ranks (so start from cleared
    gradients: whatever ``.grad`` held before would be summed too)."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    for term in terms:
        for index in shared_chunks(term.rule, chunk, device, group):
            batch = term.rule.take(index, dtype)
            loss = (batch.weights * integrand(term.form, trial, batch)).sum()
            loss.backward()
            total += loss.detach().double()
    (total,) = sum_gradients(trial.parameters(), group, [total])
    return total


def flat_gradient(parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    """The parameters' ``.grad`` as one flat vector, in the given order (zeros where None)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])


def sum_gradients(parameters: Sequence[torch.Tensor], group: Group, scalars: Sequence[torch.Tensor] = (), *,
                  key: int = 0, compress: bool = False) -> list[torch.Tensor]:
    """Sum the parameters' ``.grad`` over the ranks of ``group`` (through its compression hook
    if ``compress``, exactly otherwise; ``key`` seeds the hook's draws) and return ``scalars``
    (0-d) summed exactly; a process on its own has nothing to do."""
    if group.size == 1:
        return list(scalars)
    flat = flat_gradient(parameters)
    flat = group.compressed_sum_(flat, [p.shape for p in parameters], key) if compress else group.sum_(flat)
    offset = 0
    for p in parameters:
        p.grad = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    if not scalars:
        return []
    values = group.sum_(torch.stack([s.detach().to(torch.float64).reshape(()) for s in scalars]))
    return [v.to(s.dtype) for v, s in zip(values.unbind(), scalars)]
