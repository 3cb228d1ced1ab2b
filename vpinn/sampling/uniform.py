"""Uniform minibatches in epochs without replacement.

Each epoch sweeps one swap-or-not permutation of ``[0, N)`` (:class:`~vpinn.sampling.permutation.EpochStream`)
and adds a uniformly random rotation ``r_e`` modulo N, so every drawn index is exactly uniform on
``[0, N)`` and ``c = N / b`` is unbiased, also for batches that span two epochs; each epoch visits
every point once.  Any part of a batch is itself a uniform draw (the noise diagnostics split
batches in halves).  A batch of the whole rule (``batch = "auto"`` grown to its size) starts a
fresh epoch, so that it is the rule's exact sum rather than the tail of one permutation and the
head of the next.
"""

from __future__ import annotations

import torch

from vpinn.sampling.base import Sampler
from vpinn.sampling.hashing import key_stream
from vpinn.sampling.permutation import EpochStream

_ROTATION = 1  # purpose word of the rotation keys


class UniformSampler(Sampler):
    """Uniform minibatches of a rule of ``size`` points (epochs without replacement), drawn on
    ``device`` from ``seed``."""

    def __init__(self, size: int, device: torch.device | str, seed: int):
        self.size, self.device = int(size), torch.device(device)
        self.population = self.size
        self.stream = EpochStream(self.size, self.device, seed)

    def _rotation(self, epoch: int) -> int:
        return next(key_stream(self.stream.seed, epoch, _ROTATION)) % self.size

    def sample(self, batch: int) -> tuple[torch.Tensor, float]:
        if batch == self.size:
            self.stream.next_epoch()
        pieces = [torch.remainder(values + self._rotation(epoch), self.size) for epoch, values in self.stream.take(batch)]
        return (pieces[0] if len(pieces) == 1 else torch.cat(pieces)), self.size / batch

    @property
    def epochs(self) -> float:
        return self.stream.epochs

    def state_dict(self) -> dict:
        return {"kind": "uniform", "size": self.size, **self.stream.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.refuse_foreign(state)
        self.stream.load_state_dict(state)
