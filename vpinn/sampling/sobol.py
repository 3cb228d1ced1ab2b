"""Randomised quasi-Monte Carlo minibatches: a Sobol net over the rule's lattice, freshly shifted.

The batch is the first b points of the (unscrambled) Sobol sequence in the lattice's dimension
(:mod:`vpinn.sampling.grid`; for b = 2^m a (t, m, d)-net, which puts the right number of points
in every elementary box), tabulated once per batch size on the device.  Each draw applies a
random digital shift (XOR of 30 random bits per axis: the net property survives), maps to lattice
coordinates ``floor(u L_a)`` and rotates them by a uniform random ``r_a`` modulo ``L_a``; the
rotation makes every drawn point exactly uniform on the rule, so ``c = N / b`` is unbiased, while
the net keeps the batch spread out (variance far below uniform's for smooth integrands).
Successive draws are independent randomisations (the randomness is a hash of the draw count).
"""

from __future__ import annotations

import torch

from vpinn.quadrature.base import QuadratureRule
from vpinn.sampling.base import Sampler
from vpinn.sampling.grid import RuleGrid
from vpinn.sampling.hashing import hash32, key_stream, uniform_integers

_BITS = 30
_SHIFT, _ROTATION = 6, 7  # purpose words of the keys


class SobolSampler(Sampler):
    """Randomly shifted Sobol-net minibatches of ``rule`` (module docstring)."""

    def __init__(self, rule: QuadratureRule, device: torch.device | str, seed: int):
        self.size, self.device, self.seed = rule.size, torch.device(device), int(seed)
        self.grid = RuleGrid.of(rule)
        self.lengths = torch.tensor(self.grid.shape, dtype=torch.int64, device=self.device)
        self._axes = torch.arange(len(self.grid.shape), device=self.device)
        self._nets: dict[int, torch.Tensor] = {}
        self.draws, self.drawn = 0, 0

    def _net(self, batch: int) -> torch.Tensor:
        """The first ``batch`` Sobol points as 30-bit integers (batch, d) on the device."""
        if batch not in self._nets:
            engine = torch.quasirandom.SobolEngine(len(self.grid.shape), scramble=False)
            points = engine.draw(batch, dtype=torch.float64)
            self._nets[batch] = (points * 2**_BITS).long().to(self.device)
        return self._nets[batch]

    def sample(self, batch: int) -> tuple[torch.Tensor, float]:
        keys = key_stream(self.seed, self.draws, _SHIFT)
        self.draws, self.drawn = self.draws + 1, self.drawn + batch
        shift = hash32(self._axes, next(keys)) & ((1 << _BITS) - 1)
        unit = (self._net(batch) ^ shift).double() * 2.0**-_BITS
        rotation = uniform_integers(self._axes, next(keys) ^ _ROTATION, self.lengths)
        coordinates = torch.remainder((unit * self.lengths).long() + rotation, self.lengths)
        return self.grid.index(coordinates), self.size / batch

    @property
    def epochs(self) -> float:
        return self.drawn / self.size

    def state_dict(self) -> dict:
        return {"kind": "sobol", "size": self.size, "draws": self.draws, "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.refuse_foreign(state)
        self.draws, self.drawn = int(state["draws"]), int(state["drawn"])
