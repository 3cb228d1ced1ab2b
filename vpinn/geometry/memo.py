"""A bounded memo of a function of point sets: the same points in, the stored values out.

A distance function does not depend on the network's parameters, and training evaluates it at
the same points again and again: ENGD's exact gradient sums the whole training rule in the same
chunks every step, its line search evaluates the trial on the same Gram and boundary points for
every step length, and the error is measured on one fixed evaluation rule.  Storing
``(points, results)`` and answering a later call on equal points from the store makes those
repeats free, as a finite-element code stores its geometric factors at the quadrature points.

A call is looked up by a key of the points' shape, dtype and coordinate sums, and a hit must be
``torch.equal`` to the stored copy, so an answer is never that of other points.  Points on a GPU
bypass the memo: reading the key's sums would synchronise the host with the device in every
training step, which vpinn's CUDA steps never do.
The store is least-recently-used, bounded by ``capacity`` points in all: memory at most
``capacity x (3 + stored numbers per point)`` numbers of the points' dtype.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch

Tensor = torch.Tensor
#: points kept at most (2^19: the training, boundary, Gram and evaluation rules of a bundled mesh)
CAPACITY = 1 << 19


class PointMemo:
    """``memo(points, function)``: ``function(points)`` (a tuple of tensors), from the store
    when these exact points (b, 3) were seen before (see the module docstring)."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity, self.stored, self.hits, self.misses = capacity, 0, 0, 0
        self._entries: OrderedDict[tuple, tuple[Tensor, tuple[Tensor, ...]]] = OrderedDict()

    def __call__(self, points: Tensor, function: Callable[[Tensor], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        if points.device.type != "cpu":
            return function(points)
        with torch.no_grad():
            sums = torch.cat([points.sum(0), (points * points).sum(0)]).tolist()
        key = (tuple(points.shape), points.dtype, points.device, tuple(sums))
        entry = self._entries.get(key)
        if entry is not None and torch.equal(entry[0], points):
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        results = function(points)
        if len(points) <= self.capacity:
            self._store(key, points.detach().clone(), results)
        return results

    def _store(self, key: tuple, points: Tensor, results: tuple[Tensor, ...]) -> None:
        """Add an entry, dropping the least recently used ones beyond ``capacity`` points."""
        if key in self._entries:
            self.stored -= len(self._entries.pop(key)[0])
        self._entries[key] = (points, results)
        self.stored += len(points)
        while self.stored > self.capacity:
            _, (old, _) = self._entries.popitem(last=False)
            self.stored -= len(old)
