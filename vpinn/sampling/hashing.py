"""Counter-based randomness: hashes of plain integers, on the host and on the device.

Every random choice of a sampler is a hash of ``(seed, epoch or step, position)``: plain integers,
so the sampler's state is a few integers that mean the same on every device, and drawing needs no
generator state and no read-back to the host.  On the device the hash works in int64 with every
product kept below 2^63 (32-bit lanes times a 27-bit odd multiplier), so it is exact on CPU and CUDA.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
_MIX = 0x45D9F3B  # odd multiplier < 2^27: (x < 2^32) * _MIX stays below 2^59


def splitmix64(value: int) -> int:
    """One step of the SplitMix64 generator: a bijective, well-mixed hash of a 64-bit integer."""
    value = (value + 0x9E3779B97F4A7C15) & MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


def key_stream(*words: int):
    """An endless stream of 64-bit keys determined by ``words`` (e.g. seed, epoch, purpose)."""
    state = 0
    for word in words:
        state = splitmix64(state ^ (word & MASK64))
    while True:
        state = splitmix64(state)
        yield state


def hash32(values: torch.Tensor, key: int) -> torch.Tensor:
    """A well-mixed 32-bit hash (int64 in [0, 2^32)) of int64 ``values`` (only their low 32 bits
    and ``key``'s low 32 bits enter)."""
    h = (values ^ (key & MASK32)) & MASK32
    h = ((h ^ (h >> 16)) * _MIX) & MASK32
    h = ((h ^ (h >> 16)) * _MIX) & MASK32
    return h ^ (h >> 16)


def hash62(values: torch.Tensor, key: int) -> torch.Tensor:
    """A 62-bit hash (int64 in [0, 2^62)) of int64 ``values`` below 2^62, from two 32-bit lanes."""
    low = hash32(values, key)
    high = hash32((values >> 32) ^ low, key >> 32)
    return ((high & 0x3FFFFFFF) << 32) | low


def uniform_integers(values: torch.Tensor, key: int, modulus: int | torch.Tensor) -> torch.Tensor:
    """Integers in ``[0, modulus)`` hashed from ``values``: uniform up to a bias below modulus / 2^62."""
    return torch.remainder(hash62(values, key), modulus)


def uniform_floats(values: torch.Tensor, key: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Floats in ``[0, 1)`` hashed from ``values`` (53 random bits)."""
    return (hash62(values, key) >> 9).to(dtype) * 2.0**-53
