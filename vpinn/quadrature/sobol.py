"""Scrambled Sobol points with equal weights, computed from the point index on demand.

A (scrambled) Sobol point is a digital XOR of direction numbers:
``x_i = shift XOR (XOR over the set bits k of i of v_k)``, read as a 30-bit binary fraction.
The scrambled direction numbers ``v_k`` and the random digital ``shift`` come from
:class:`scipy.stats.qmc.Sobol` (its linear matrix scramble + digital shift), recovered from the
points it generates through its public interface; after that, any point is a few integer
operations on the device, so the rule stores O(d * 30) numbers whatever N is.

For ``N = 2^m`` the point set equals scipy's first ``2^m`` points (a (t, m, d)-net); the order
differs (scipy uses Gray-code order).  Weights are ``1/N`` in parameter space: a QMC rule.
"""

from __future__ import annotations

import numpy as np
import torch

from vpinn.geometry.maps import ParameterMap
from vpinn.quadrature.base import MappedRule

BITS = 30


def scrambled_direction_numbers(dim: int, bits_needed: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(v, shift)``: int64 arrays (bits_needed, dim) and (dim,) for a scrambled Sobol sequence.

    scipy emits points in Gray-code order: point ``n`` is ``shift XOR v[k]`` for every set bit k of
    ``n ^ (n >> 1)``.  The point ``n = 2^(k+1) - 1`` has Gray code ``2^k``, so it is
    ``shift XOR v[k]``; point 0 is ``shift``.  Fast-forwarding costs O(2^bits_needed) in C.
    """
    from scipy.stats import qmc  # imported here: scipy.stats costs ~1 s to import, only Sobol needs it

    engine = qmc.Sobol(dim, scramble=True, seed=seed, bits=BITS)
    scale = float(2**BITS)
    shift = np.rint(engine.random(1)[0] * scale).astype(np.int64)
    position, v = 1, []
    for k in range(bits_needed):
        target = 2 ** (k + 1) - 1
        engine.fast_forward(target - position)
        point = np.rint(engine.random(1)[0] * scale).astype(np.int64)
        position = target + 1
        v.append(point ^ shift)
    return np.array(v, dtype=np.int64).reshape(bits_needed, dim), shift


class SobolRule(MappedRule):
    """``points`` scrambled Sobol points on the parameter box, weights ``1/points``."""

    def __init__(self, mapping: ParameterMap, points: int, seed: int = 0):
        if points > 2**BITS:
            raise ValueError(f"at most 2^{BITS} Sobol points, not {points}")
        super().__init__(mapping, points)
        bits_needed = max(1, int(points - 1).bit_length())
        self._v, self._shift = scrambled_direction_numbers(mapping.dim, bits_needed, seed)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._tables:
            self._tables[device] = (torch.from_numpy(self._v).to(device), torch.from_numpy(self._shift).to(device))
        return self._tables[device]

    def parameters(self, index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        v, shift = self._table(index.device)
        digits = shift.expand(index.shape[0], -1).clone()
        for k in range(v.shape[0]):
            bit = (index >> k) & 1
            digits ^= bit[:, None] * v[k]
        params = digits.to(dtype) * (0.5**BITS)
        return params, torch.full(index.shape, 1.0 / self.size, dtype=dtype, device=index.device)
