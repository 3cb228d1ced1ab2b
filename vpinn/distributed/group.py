"""The ranks of a run and the few collectives vpinn needs.

:class:`Group` is one process alone (the default everywhere): every collective is the identity,
so single-process code pays nothing.  :class:`ProcessGroup` is one rank of ``size`` processes
started by ``torchrun`` (:mod:`vpinn.distributed.launch`): sums and maxima are
``torch.distributed.all_reduce`` on the compute device (gloo on CPU, nccl on CUDA), and stop
decisions go through a second, gloo (CPU) group, so that agreeing on a flag never waits on the
GPU's stream.

Estimates are *sums*: every rank draws its own part of one global batch with the global
estimator factor ``N/(K b)`` (:class:`~vpinn.distributed.sharding.ShardedSampler`), so the
global estimate, its gradient and every full-rule sum are the all-reduced sums of the ranks'
parts.  Every rank then holds the same bits (a ring all-reduce hands every rank the same
result), and every decision taken from them (line searches, Armijo tests, convergence) is the
same on every rank.

``bytes_sent`` counts the payload this rank hands to all-reduce calls (elements times element
size; a ring all-reduce moves about ``2 (K - 1) / K`` times that over the wire).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.distributed as dist

from vpinn.distributed.compression import COMPRESSIONS

Tensor = torch.Tensor

#: stop reasons in increasing precedence; the agreed reason is the highest any rank gives
REASONS = (None, "converged", "time limit", "interrupted")


class Group:
    """One process on its own: rank 0 of 1; every collective returns its input."""

    rank: int = 0
    size: int = 1
    compression: str = "none"

    def __init__(self) -> None:
        self.bytes_sent = 0

    @property
    def is_root(self) -> bool:
        """True on the rank that writes files and progress (rank 0)."""
        return self.rank == 0

    def share(self, count: int) -> tuple[int, int]:
        """This rank's contiguous part ``[start, stop)`` of ``count`` items, split as evenly as
        possible (the first ``count % size`` ranks get one more)."""
        base, extra = divmod(count, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def sum_(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks, in place."""
        return tensor

    def max_(self, tensor: Tensor) -> Tensor:
        """``tensor`` maximised over the ranks, in place."""
        return tensor

    def agree(self, reason: str | None) -> str | None:
        """The stop reason every rank agrees on: the highest in :data:`REASONS` any rank gives."""
        return reason

    def gather_rows(self, rows: Tensor) -> Tensor:
        """Every rank's rows (r_k, ...) stacked in rank order (zero rows pad ranks with fewer)."""
        return rows

    def compressed_sum_(self, flat: Tensor, shapes: Sequence[torch.Size], key: int) -> Tensor:
        """The flat gradient (P,) of parameters of ``shapes`` summed over the ranks through the
        compression hook (``train.compression``), in place where the hook allows; ``key`` (e.g.
        the optimiser's step count) seeds what the hook draws at random, the same on every rank
        and again on a resumed run."""
        return flat


class ProcessGroup(Group):
    """One rank of a ``torch.distributed`` run (see the module docstring).

    Parameters
    ----------
    control:
        A gloo group over the same ranks for host-side flags (stop decisions).
    compression, bits, seed:
        The hook of minibatch gradient sums (``train.compression``, ``train.bits``, the run's
        seed), built for the parameters' shapes on first use
        (:data:`~vpinn.distributed.compression.COMPRESSIONS`).
    """

    def __init__(self, control, compression: str = "none", bits: int = 6, seed: int = 0):
        super().__init__()
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.control, self.compression, self.bits, self.seed = control, compression, bits, seed
        self.hook: Callable | None = None

    def sum_(self, tensor: Tensor) -> Tensor:
        dist.all_reduce(tensor)
        self.bytes_sent += tensor.numel() * tensor.element_size()
        return tensor

    def max_(self, tensor: Tensor) -> Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        self.bytes_sent += tensor.numel() * tensor.element_size()
        return tensor

    def agree(self, reason: str | None) -> str | None:
        code = torch.tensor([REASONS.index(reason)], dtype=torch.int32)
        dist.all_reduce(code, op=dist.ReduceOp.MAX, group=self.control)
        return REASONS[int(code)]

    def gather_rows(self, rows: Tensor) -> Tensor:
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        dist.all_gather(counts, torch.tensor([rows.shape[0]]), group=self.control)
        most = max(int(c) for c in counts)
        padded = rows.new_zeros(most, *rows.shape[1:])
        padded[:rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        self.bytes_sent += padded.numel() * padded.element_size()
        return torch.cat(parts)

    def compressed_sum_(self, flat: Tensor, shapes: Sequence[torch.Size], key: int) -> Tensor:
        if self.hook is None:
            self.hook = COMPRESSIONS[self.compression](list(shapes), self.bits, self.seed)
        flat, sent = self.hook(self, flat, key)
        self.bytes_sent += sent
        return flat


#: the group of a process run on its own
LOCAL = Group()
