"""Minibatch samplers: which quadrature points a training step sees, and how they are reweighted.

For a rule sum ``S = sum_{i<N} w_i f(x_i)`` a sampler returns indices ``I`` (b,) and a factor
``c`` such that ``sum_{i in I} c w_i f(x_i)`` is an unbiased estimate of ``S``.

:class:`UniformSampler` draws points uniformly in epochs *without replacement*: each epoch
visits all N points exactly once, in a pseudo-random order, then a new order starts.  The order
is a keyed bijection ``pi`` of ``[0, 2^k)`` (``2^k >= N``, a 3-round Feistel network) swept in
sequence, keeping the images that fall below N; a uniform random rotation then makes every
drawn index exactly uniform on ``[0, N)``, so ``c = N / b`` is unbiased, also for batches that
span two epochs.  A batch costs O(b) work and memory whatever N is (a ``randperm`` of N = 1e8
would hold 800 MB).  Keys come from a seeded :class:`torch.Generator` on the compute device; the
state is (epoch, cursor, generator), so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # odd multiplier < 2^27: (x < 2^32) * _MIX stays below 2^63
_ROUNDS = 3  # Luby-Rackoff: three Feistel rounds with independent keys give a pseudo-random permutation


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
        Seed of the generator that draws each epoch's permutation keys and rotation.
    """

    def __init__(self, size: int, device: torch.device | str, seed: int):
        self.size = int(size)
        self.device = torch.device(device)
        self.bits = max(1, (self.size - 1).bit_length())
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.epoch, self.cursor = 0, 0
        self._keys = self._draw_keys()

    def _draw_keys(self) -> list[int]:
        """Round keys and rotation of a new epoch (drawn on the device, read once per epoch)."""
        rounds = torch.randint(0, 2**31, (_ROUNDS,), generator=self.generator, device=self.device)
        rotation = torch.randint(0, self.size, (1,), generator=self.generator, device=self.device)
        return torch.cat([rounds, rotation]).tolist()

    def _next_epoch(self) -> None:
        self.epoch, self.cursor = self.epoch + 1, 0
        self._keys = self._draw_keys()

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
        """Everything needed to continue the same sequence of batches."""
        return {"epoch": self.epoch, "cursor": self.cursor, "keys": list(self._keys),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._keys = list(state["keys"])
        self.generator.set_state(state["generator"])
