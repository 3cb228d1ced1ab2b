"""Stratified minibatches: the rule's lattice cut into ``M`` equal boxes, every box sampled.

With ``A_s`` points from stratum s (n points each), the estimate ``sum_s (n / A_s) sum w f`` has
only the within-strata variance: the between-strata part of uniform sampling's variance is gone.

* ``allocation = "proportional"``: ``A = b / M`` points per stratum, in epochs without
  replacement: each stratum sweeps one permutation of its n positions per epoch (shared
  swap-or-not stream, a random rotation per stratum and epoch), so a whole epoch visits every point
  once, and ``c = N / b``.  A batch is laid out row by row (one point per stratum per row), so any
  whole rows are themselves a stratified draw.
* ``allocation = "neyman"``: ``A_s ∝ sigma_s`` (Neyman's rule, :mod:`vpinn.sampling.allocation`)
  from running estimates of each stratum's standard deviation, refreshed every ``refresh_every``
  draws, with at least one point per stratum; points are drawn with replacement within strata
  and ``c_j = n / A_{s_j}``.
"""

from __future__ import annotations

from typing import Literal

import torch

from vpinn.quadrature.base import QuadratureRule
from vpinn.sampling.allocation import allocate, neyman_shares
from vpinn.sampling.base import Sampler
from vpinn.sampling.grid import RuleGrid, Tiling
from vpinn.sampling.hashing import key_stream, uniform_integers
from vpinn.sampling.permutation import EpochStream
from vpinn.sampling.statistics import StratumStatistics

_ROTATION, _DRAW = 2, 3  # purpose words of the keys


class StratifiedSampler(Sampler):
    """Stratified minibatches of ``rule`` with about ``strata`` strata (see the module docstring).

    ``mix`` is the proportional share mixed into Neyman's allocation.
    """

    def __init__(self, rule: QuadratureRule, device: torch.device | str, seed: int, *, strata: int,
                 allocation: Literal["proportional", "neyman"] = "proportional", refresh_every: int = 20, mix: float = 0.1):
        self.size, self.device, self.seed = rule.size, torch.device(device), int(seed)
        self.tiling = Tiling(RuleGrid.of(rule), strata)
        self.allocation, self.refresh_every, self.mix = allocation, refresh_every, mix
        count = self.tiling.count
        self.granule = count if allocation == "proportional" else 1
        self.minimum = count
        self.stream = EpochStream(self.tiling.size, self.device, seed)
        self._strata = torch.arange(count, device=self.device)
        self._sizes = torch.full((count,), float(self.tiling.size), dtype=torch.float64, device=self.device)
        self._rotations: tuple[int, torch.Tensor] | None = None
        self.stats = StratumStatistics(count, self.device)
        self.draws, self.drawn = 0, 0
        self._last: torch.Tensor | None = None  # strata of the last draw's points

    def _rotation(self, epoch: int) -> torch.Tensor:
        if self._rotations is None or self._rotations[0] != epoch:
            key = next(key_stream(self.seed, epoch, _ROTATION))
            self._rotations = (epoch, uniform_integers(self._strata, key, self.tiling.size))
        return self._rotations[1]

    def sample(self, batch: int) -> tuple[torch.Tensor, float | torch.Tensor]:
        self.check_batch(batch)
        self.draws, self.drawn = self.draws + 1, self.drawn + batch
        if self.allocation == "proportional":
            return self._proportional(batch)
        return self._neyman(batch)

    def _proportional(self, batch: int) -> tuple[torch.Tensor, float]:
        rows = []
        for epoch, values in self.stream.take(batch // self.tiling.count):
            local = torch.remainder(values[:, None] + self._rotation(epoch)[None, :], self.tiling.size)
            rows.append(self.tiling.index(self._strata.expand_as(local), local))
        index = torch.cat(rows).reshape(-1)
        self._last = self._strata.repeat(batch // self.tiling.count)
        return index, self.size / batch

    def _neyman(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.draws > 1 and (self.draws - 1) % self.refresh_every == 0:
            self.stats.refresh()
        counts = allocate(batch, neyman_shares(self._sizes, self.stats.deviation, self.mix))
        slots = torch.arange(batch, device=self.device)
        strata = torch.searchsorted(counts.cumsum(0), slots, right=True)
        key = next(key_stream(self.seed, self.draws, _DRAW))
        local = uniform_integers(slots, key, self.tiling.size)
        self._last = strata
        return self.tiling.index(strata, local), self.tiling.size / counts[strata].double()

    def observe(self, contributions: torch.Tensor) -> None:
        if self.allocation == "neyman" and self._last is not None:
            self.stats.add(self._last, contributions * self.tiling.size)

    @property
    def epochs(self) -> float:
        return self.stream.epochs if self.allocation == "proportional" else self.drawn / self.size

    def state_dict(self) -> dict:
        return {"kind": f"stratified-{self.allocation}", "size": self.size, "strata": self.tiling.count,
                "draws": self.draws, "drawn": self.drawn, "stream": self.stream.state_dict(), "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.refuse_foreign(state)
        self.draws, self.drawn = int(state["draws"]), int(state["drawn"])
        self.stream.load_state_dict(state["stream"])
        self.stats.load_state_dict(state["stats"])
        self._rotations = None
