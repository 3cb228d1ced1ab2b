"""Importance sampling: strata drawn in proportion to where the integrand is large.

The proposal is per stratum (the tiles of :mod:`vpinn.sampling.grid`):
``p_s = (1 - mix) m_s / sum m + mix / M``, with ``m_s`` a running estimate of the mean magnitude
of the stratum's scaled contributions ``|n w f|`` (the energy density's), refreshed every
``refresh_every`` draws on the device, and ``mix >= 0.1`` of uniform so every stratum keeps a
positive probability (the weights stay bounded by ``1 / mix``).  Points are drawn independently:
a stratum by inverting the proposal's distribution function at a hashed uniform, then a uniform
point in it; the factor of point j is ``1 / (b P(i_j)) = n / (b p_{s_j})``, so the estimate is
unbiased whatever the proposal.
"""

from __future__ import annotations

import torch

from vpinn.quadrature.base import QuadratureRule
from vpinn.sampling.base import Sampler
from vpinn.sampling.grid import RuleGrid, Tiling
from vpinn.sampling.hashing import key_stream, uniform_floats, uniform_integers
from vpinn.sampling.statistics import StratumStatistics

_STRATUM, _POINT = 4, 5  # purpose words of the keys


class ImportanceSampler(Sampler):
    """Importance-sampled minibatches of ``rule`` over about ``strata`` strata (module docstring)."""

    def __init__(self, rule: QuadratureRule, device: torch.device | str, seed: int, *, strata: int,
                 refresh_every: int = 20, mix: float = 0.1):
        if not 0.1 <= mix <= 1:
            raise ValueError(f"the uniform share of the proposal must be between 0.1 and 1, not {mix}")
        self.size, self.device, self.seed = rule.size, torch.device(device), int(seed)
        self.tiling = Tiling(RuleGrid.of(rule), strata)
        self.refresh_every, self.mix = refresh_every, mix
        self.stats = StratumStatistics(self.tiling.count, self.device)
        self.proposal = torch.full((self.tiling.count,), 1.0 / self.tiling.count, dtype=torch.float64, device=self.device)
        self.draws, self.drawn = 0, 0
        self._last: torch.Tensor | None = None

    def _refresh(self) -> None:
        self.stats.refresh()
        magnitude = self.stats.mean_abs
        learned = magnitude / magnitude.sum().clamp_min(1e-300)
        learned = torch.where(magnitude.sum() > 0, learned, torch.full_like(learned, 1.0 / self.tiling.count))
        self.proposal = (1 - self.mix) * learned + self.mix / self.tiling.count

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_batch(batch)
        if self.draws > 0 and self.draws % self.refresh_every == 0:
            self._refresh()
        keys = key_stream(self.seed, self.draws, _STRATUM)
        self.draws, self.drawn = self.draws + 1, self.drawn + batch
        slots = torch.arange(batch, device=self.device)
        cdf = self.proposal.cumsum(0)
        strata = torch.searchsorted(cdf, uniform_floats(slots, next(keys)) * cdf[-1], right=True).clamp_max(self.tiling.count - 1)
        local = uniform_integers(slots, next(keys) ^ _POINT, self.tiling.size)
        self._last = strata
        probability = self.proposal[strata] / cdf[-1]
        return self.tiling.index(strata, local), self.tiling.size / (batch * probability)

    def observe(self, contributions: torch.Tensor) -> None:
        if self._last is not None:
            self.stats.add(self._last, contributions * self.tiling.size)

    @property
    def epochs(self) -> float:
        return self.drawn / self.size

    def state_dict(self) -> dict:
        return {"kind": "importance", "size": self.size, "strata": self.tiling.count, "draws": self.draws,
                "drawn": self.drawn, "stats": self.stats.state_dict(), "proposal": self.proposal.to("cpu", copy=True)}

    def load_state_dict(self, state: dict) -> None:
        self.refuse_foreign(state)
        self.draws, self.drawn = int(state["draws"]), int(state["drawn"])
        self.stats.load_state_dict(state["stats"])
        self.proposal = state["proposal"].to(self.device, copy=True)
