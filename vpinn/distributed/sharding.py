"""Splitting the work of one estimate among the ranks: minibatches and full-rule sums.

:class:`ShardedSampler` wraps the run's sampler: every rank holds an identically seeded copy,
draws the same ``K b`` indices of one global batch from it and keeps its own slice of ``b``.
The ranks' batches are therefore disjoint parts of one epoch, the factor is the global
``N / (K b)``, and the sum of the ranks' estimates is exactly the estimate a single process
would make from a batch of ``K b`` (the same points; for samplers whose points carry their own
factors, e.g. stratified or importance draws, only the sum over the ranks is the estimate, and
that is what the ranks compute).  Adaptive samplers learn from the contributions of the whole
global batch, gathered from all ranks in draw order, so that every rank's copy stays identical.
The wrapped sampler's state is the global one, so a checkpoint resumes with any number of ranks.

:func:`shared_chunks` gives each rank a contiguous part of a rule in chunks; summed over the
ranks (:func:`shared_total`) it is the whole rule's sum.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from vpinn.distributed.group import Group
from vpinn.quadrature.base import PointBatch, QuadratureRule
from vpinn.sampling import Sampler


class ShardedSampler(Sampler):
    """This rank's slice of the global batches of ``sampler`` (see the module docstring); a
    per-rank batch that is a multiple of the sampler's granule makes a global one that is too."""

    def __init__(self, sampler: Sampler, group: Group):
        self.sampler, self.group = sampler, group
        self.size, self.granule, self.minimum, self.population = sampler.size, sampler.granule, sampler.minimum, sampler.population
        self._learns = type(sampler).observe is not Sampler.observe

    @property
    def epochs(self) -> float:
        return self.sampler.epochs

    def sample(self, batch: int) -> tuple[torch.Tensor, float | torch.Tensor]:
        """This rank's ``batch`` indices of a global batch of ``K batch``, and their factors."""
        index, factor = self.sampler.sample(self.group.size * batch)
        mine = slice(self.group.rank * batch, (self.group.rank + 1) * batch)
        return index[mine], factor[mine] if torch.is_tensor(factor) and factor.dim() else factor

    def observe(self, contributions: torch.Tensor) -> None:
        """Hand the whole global batch's contributions (all ranks', in draw order) to an adaptive sampler."""
        if self._learns:
            self.sampler.observe(self.group.gather_rows(contributions[:, None])[:, 0])

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def shared_chunks(rule: QuadratureRule, chunk: int, device, group: Group) -> Iterator[torch.Tensor]:
    """Index ranges of at most ``chunk`` points covering this rank's part of ``rule`` (one
    empty range if the part is empty, so that every rank evaluates something of each shape)."""
    start, stop = group.share(rule.size)
    if start == stop:
        yield torch.arange(0, device=device)
    for first in range(start, stop, chunk):
        yield torch.arange(first, min(first + chunk, stop), device=device)


def shared_total(rule: QuadratureRule, fn: Callable[[PointBatch], torch.Tensor], chunk: int, device,
                 dtype: torch.dtype, group: Group) -> torch.Tensor:
    """``sum_i w_i fn(x_i)`` over the whole rule (float64, as :meth:`QuadratureRule.total`): each
    rank sums its part, then the parts are summed over the ranks."""
    return group.sum_(rule.total_over(fn, shared_chunks(rule, chunk, device, group), dtype))
