"""Two-stage (cluster) sampling: ``M`` strata drawn at random, ``A`` points in each.

Not a training sampler but the design behind the between/within split of the variance command:
with ``K`` strata of ``n`` points (``N = K n``), draw M strata uniformly with replacement and A
points uniformly with replacement in each; ``c = N / (M A)``.  The estimate is unbiased and its
variance is exactly

    Var = sigma_b^2 / M + sigma_w^2 / (M A),

with ``sigma_b^2`` the variance over strata of ``K S_s`` (``S_s`` the stratum's sum) and
``sigma_w^2`` the mean over strata of the within-stratum variance of ``N w_i f_i``.  The split says
how much of uniform sampling's variance (``(sigma_b^2 + sigma_w^2) / b`` for large N) is between
strata, the part stratification removes.
"""

from __future__ import annotations

import torch

from vpinn.quadrature.base import QuadratureRule
from vpinn.sampling.base import Sampler
from vpinn.sampling.grid import RuleGrid, Tiling
from vpinn.sampling.hashing import key_stream, uniform_integers

_STRATA, _POINTS = 8, 9  # purpose words of the keys


class TwoStageSampler(Sampler):
    """``strata_drawn`` strata (of about ``strata`` in the tiling) times ``per_stratum`` points."""

    def __init__(self, rule: QuadratureRule, device: torch.device | str, seed: int, *, strata: int,
                 strata_drawn: int, per_stratum: int):
        self.size, self.device, self.seed = rule.size, torch.device(device), int(seed)
        self.tiling = Tiling(RuleGrid.of(rule), strata)
        self.strata_drawn, self.per_stratum = strata_drawn, per_stratum
        self.granule = self.minimum = strata_drawn * per_stratum
        self.draws = 0

    def sample(self, batch: int) -> tuple[torch.Tensor, float]:
        self.check_batch(batch)
        if batch != self.granule:
            raise ValueError(f"a two-stage design of {self.strata_drawn} x {self.per_stratum} points draws exactly {self.granule}")
        keys = key_stream(self.seed, self.draws, _STRATA)
        self.draws += 1
        chosen = uniform_integers(torch.arange(self.strata_drawn, device=self.device), next(keys), self.tiling.count)
        strata = chosen.repeat_interleave(self.per_stratum)
        local = uniform_integers(torch.arange(batch, device=self.device), next(keys) ^ _POINTS, self.tiling.size)
        return self.tiling.index(strata, local), self.size / batch

    @property
    def epochs(self) -> float:
        return self.draws * self.granule / self.size

    def state_dict(self) -> dict:
        return {"kind": "two-stage", "size": self.size, "draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        self.refuse_foreign(state)
        self.draws = int(state["draws"])


def fit_between_within(designs: list[tuple[int, int]], variances: list[float]) -> tuple[float, float]:
    """Non-negative least-squares ``(sigma_b^2, sigma_w^2)`` of ``Var = sigma_b^2 / M + sigma_w^2 / (M A)``
    from measured variances of designs ``(M, A)`` (at least two with different A), in relative
    residuals (each measured variance has a relative error)."""
    import numpy as np
    from scipy.optimize import nnls

    matrix = np.array([[1 / m, 1 / (m * a)] for m, a in designs]) / np.array(variances)[:, None]
    solution, _ = nnls(matrix, np.ones(len(designs)))
    return float(solution[0]), float(solution[1])
