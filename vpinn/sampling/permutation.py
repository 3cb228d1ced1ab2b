"""Pseudo-random permutations of ``[0, n)`` for any n, evaluated pointwise, in fixed shapes.

An epoch without replacement needs a bijection of the rule's indices that costs O(b) per batch
(a ``randperm`` of N = 1e9 would hold 8 GB).  A Feistel network permutes ``[0, 2^k)`` and needs
rejection of the images >= n, whose variable count forces a read-back to the host; the
*swap-or-not* shuffle (Hoang, Morris and Rogaway, CRYPTO 2012) permutes ``[0, n)`` directly.
Round r with key ``K_r`` in ``[0, n)`` pairs x with its partner ``K_r - x (mod n)`` and swaps the
pair when a hash bit of ``max(x, partner)`` is set; each round is an involution, so every
composition is a bijection, and every tensor keeps its shape.

:class:`EpochStream` sweeps positions ``0, 1, ..., n-1`` of one permutation per epoch, so each
epoch visits every index once; its state is ``(seed, epoch, cursor)``, plain integers.  It computes
permuted values a stretch ahead (8 requests, at most ``ahead`` positions, at a time) so that the
~10 elementwise ops per round are launched once per stretch, not once per batch, while the
stretch's memory still follows the request size, never the rule's.
"""

from __future__ import annotations

import torch

from vpinn.sampling.hashing import hash32, key_stream

#: Rounds of the swap-or-not shuffle.  Each round swaps half the pairs; after 24 rounds the
#: batch statistics of a smooth integrand are those of uniform sampling without replacement
#: (tests/test_sampling.py measures the variance against the finite-population formula).
ROUNDS = 24


def round_keys(seed: int, epoch: int, n: int, purpose: int = 0) -> list[tuple[int, int]]:
    """``ROUNDS`` pairs (partner key in ``[0, n)``, hash key) of one epoch."""
    keys = key_stream(seed, epoch, purpose)
    return [(next(keys) % n, next(keys)) for _ in range(ROUNDS)]


def swap_or_not(values: torch.Tensor, keys: list[tuple[int, int]], n: int) -> torch.Tensor:
    """The permutation of ``[0, n)`` given by ``keys`` (:func:`round_keys`) applied to ``values``."""
    for partner_key, hash_key in keys:
        partner = torch.remainder(partner_key - values, n)
        swap = (hash32(torch.maximum(values, partner), hash_key) & 1).bool()
        values = torch.where(swap, partner, values)
    return values


class EpochStream:
    """Positions of one permutation of ``[0, n)`` per epoch, consumed in order across epochs.

    ``take(count)`` returns pieces ``(epoch, values)``, each ``values`` int64 on ``device``: the
    permuted positions of that epoch, in stream order; a request that crosses an epoch boundary
    gives two (or, for ``count > n``, more) pieces.  All sizes are host integers, so nothing is
    read back from the device.
    """

    def __init__(self, n: int, device: torch.device, seed: int, purpose: int = 0, ahead: int = 1 << 18):
        self.n, self.device, self.seed, self.purpose, self.ahead = int(n), torch.device(device), int(seed), purpose, ahead
        self.epoch, self.cursor = 0, 0
        self._cache: tuple[int, int, torch.Tensor] | None = None  # (epoch, start, values)

    def _values(self, start: int, length: int) -> torch.Tensor:
        """Permuted positions ``start .. start+length`` of the current epoch (from the cache)."""
        cache = self._cache
        if cache is None or cache[0] != self.epoch or not cache[1] <= start or start + length > cache[1] + len(cache[2]):
            span = min(self.n - start, max(length, min(self.ahead, 8 * length)))
            positions = torch.arange(start, start + span, device=self.device)
            cache = self._cache = (self.epoch, start, swap_or_not(positions, round_keys(self.seed, self.epoch, self.n, self.purpose), self.n))
        return cache[2][start - cache[1]: start - cache[1] + length]

    def take(self, count: int) -> list[tuple[int, torch.Tensor]]:
        """The next ``count`` positions of the stream, as pieces per epoch."""
        pieces = []
        while count > 0:
            length = min(count, self.n - self.cursor)
            pieces.append((self.epoch, self._values(self.cursor, length)))
            self.cursor += length
            count -= length
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
        return pieces

    def next_epoch(self) -> None:
        """Skip the rest of the current epoch (nothing if at its start)."""
        if self.cursor:
            self.epoch, self.cursor = self.epoch + 1, 0

    @property
    def epochs(self) -> float:
        """Epochs swept so far, with the fraction of the current one."""
        return self.epoch + self.cursor / self.n

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n:
            raise ValueError(f"sampler state of {state['n']} positions per epoch, not {self.n}")
        self.seed, self.epoch, self.cursor = int(state["seed"]), int(state["epoch"]), int(state["cursor"])
        self._cache = None
