"""Minibatch samplers: which quadrature points a training step sees, and how they are reweighted.

For a rule sum ``S = sum_{i<N} w_i f(x_i)`` a sampler returns indices ``I`` (b,) and a factor
``c`` such that ``sum_{i in I} c w_i f(x_i)`` is an unbiased estimate of ``S``.

:class:`UniformSampler` draws points uniformly in epochs *without replacement*: each epoch
visits all N points exactly once, in a pseudo-random order, then a new order starts.  The order
is a keyed bijection ``pi`` of ``[0, 2^k)`` (``2^k >= N``, a 3-round Feistel network) swept in
sequence, keeping the images that fall below N; a uniform random rotation then makes every
drawn index exactly uniform on ``[0, N)``, so ``c = N / b`` is unbiased, also for batches that
span two epochs.  A batch costs O(b) work and memory whatever N is (a ``randperm`` of N = 1e8
would hold 800 MB).

An epoch's keys and rotation are a hash (SplitMix64) of ``(seed, epoch)``: plain integers, the
same on every device, so the sampler's whole state is three integers ``(seed, epoch, cursor)``
and a checkpoint written on one device resumes on another, drawing the same batches as an
uninterrupted run.  (The rotation is the hash modulo N; its bias, below N / 2^64, is far under
anything a test or a training run can see.)
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # odd multiplier < 2^27: (x < 2^32) * _MIX stays below 2^63
_ROUNDS = 3  # Luby-Rackoff: three Feistel rounds with independent keys give a pseudo-random permutation
_MASK64 = (1 << 64) - 1


def splitmix64(value: int) -> int:
    """One step of the SplitMix64 generator: a bijective, well-mixed hash of a 64-bit integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def epoch_keys(seed: int, epoch: int, size: int) -> list[int]:
    """The ``_ROUNDS`` Feistel round keys (below 2^31) and the rotation (below ``size``) of an epoch."""
    state = splitmix64((seed & _MASK64) ^ splitmix64(epoch))
    keys = []
    for _ in range(_ROUNDS + 1):
        state = splitmix64(state)
        keys.append(state)
    return [k >> 33 for k in keys[:_ROUNDS]] + [keys[_ROUNDS] % size]


def feistel_permute(values: torch.Tensor, keys: list[int], bits: int) -> torch.Tensor:
    """A keyed bijection of ``[0, 2^bits)`` applied to ``values`` (int64).

    An unbalanced Feistel network: split into a high part of ``bits//2`` bits and a low part with
    the rest, replace the high part by ``high XOR F(low)`` and swap; each round is invertible,
    so the composition is a permutation for any round function ``F``.
    """
    high_bits, low_bits = bits // 2, bits - bits // 2
    for key in keys:
        high, low = values >> low_bits, values & ((1 << low_bits) - 1)
        mix = ((low ^ key) * _MIX) & _MASK32
        mix = mix ^ (mix >> 15)
        values = (low << high_bits) | (high ^ (mix & ((1 << high_bits) - 1)))
        high_bits, low_bits = low_bits, high_bits
    return values


class UniformSampler:
    """Uniform minibatches of a rule of ``size`` points, epochs without replacement.

    Parameters
    ----------
    size:
        Number of points N of the rule.
    device:
        Where indices are produced (the compute device).
    seed:
        Seed of every epoch's permutation keys and rotation.
    """

    def __init__(self, size: int, device: torch.device | str, seed: int):
        self.size = int(size)
        self.device = torch.device(device)
        self.bits = max(1, (self.size - 1).bit_length())
        self.seed = int(seed)
        self.epoch, self.cursor = 0, 0
        self._keys = epoch_keys(self.seed, self.epoch, self.size)

    @property
    def epochs(self) -> float:
        """Epochs drawn so far, with the fraction of the current one (swept positions of 2^bits)."""
        return self.epoch + self.cursor / (1 << self.bits)

    def _next_epoch(self) -> None:
        self.epoch, self.cursor = self.epoch + 1, 0
        self._keys = epoch_keys(self.seed, self.epoch, self.size)

    def sample(self, batch: int) -> tuple[torch.Tensor, float]:
        """Indices (batch,) int64 on the device and the estimator factor ``N / batch``."""
        pieces, missing, span_total = [], batch, 1 << self.bits
        while missing > 0:
            # Expect a fraction N / 2^bits >= 1/2 of the swept positions to land in [0, N).
            span = min(span_total - self.cursor, math.ceil(missing * span_total / self.size * 1.1) + 64)
            positions = torch.arange(self.cursor, self.cursor + span, device=self.device)
            images = feistel_permute(positions, self._keys[:_ROUNDS], self.bits)
            inside = images < self.size
            kept = images[inside]
            if kept.numel() > missing:
                kept = kept[:missing]
                self.cursor = int(positions[inside][missing - 1]) + 1
            else:
                self.cursor += span
            pieces.append((kept + self._keys[_ROUNDS]) % self.size)
            missing -= kept.numel()
            if self.cursor == span_total:
                self._next_epoch()
        index = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return index, self.size / batch

    def state_dict(self) -> dict:
        """Everything needed to continue the same sequence of batches: plain integers, valid on
        any device."""
        return {"size": self.size, "seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; refuses a state of a rule of another size."""
        if int(state["size"]) != self.size:
            raise ValueError(f"sampler state of a rule of {state['size']} points, not {self.size}")
        self.seed, self.epoch, self.cursor = int(state["seed"]), int(state["epoch"]), int(state["cursor"])
        self._keys = epoch_keys(self.seed, self.epoch, self.size)
