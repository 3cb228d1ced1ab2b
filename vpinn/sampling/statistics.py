"""Running per-stratum moments of the sampled contributions, kept on the device.

Adaptive samplers learn where the integrand is large or varies from the training steps
themselves: each step's contributions ``n_s w_i f(x_i)`` (a point's contribution scaled to its
stratum) are added to per-stratum sums; every ``refresh_every`` draws the sums become exponentially
averaged means, mean magnitudes and variances.  Scatter-adds and elementwise updates only: no
read-back to the host.
"""

from __future__ import annotations

import torch


class StratumStatistics:
    """Moments of ``count`` strata; ``decay`` weighs the previous estimate at each refresh."""

    def __init__(self, count: int, device: torch.device, decay: float = 0.5):
        self.count, self.decay = count, decay
        zeros = torch.zeros(count, dtype=torch.float64, device=device)
        self._sums = {"n": zeros.clone(), "v": zeros.clone(), "abs": zeros.clone(), "sq": zeros.clone()}
        self.mean_abs = torch.ones(count, dtype=torch.float64, device=device)
        self.deviation = torch.ones(count, dtype=torch.float64, device=device)
        self.seen = torch.zeros(count, dtype=torch.bool, device=device)

    def add(self, strata: torch.Tensor, values: torch.Tensor) -> None:
        """Accumulate ``values`` (b,) of points in ``strata`` (b,)."""
        values = values.double()
        for name, v in (("n", torch.ones_like(values)), ("v", values), ("abs", values.abs()), ("sq", values * values)):
            self._sums[name].index_add_(0, strata, v)

    def refresh(self) -> None:
        """Fold the sums since the last refresh into the running estimates (strata not visited
        keep theirs), then start new sums."""
        n = self._sums["n"]
        visited = n > 0
        safe = n.clamp_min(1)
        mean_abs = self._sums["abs"] / safe
        variance = (self._sums["sq"] / safe - (self._sums["v"] / safe) ** 2).clamp_min(0)
        weight = torch.where(self.seen, torch.full_like(n, self.decay), torch.zeros_like(n))
        self.mean_abs = torch.where(visited, weight * self.mean_abs + (1 - weight) * mean_abs, self.mean_abs)
        self.deviation = torch.where(visited, (weight * self.deviation**2 + (1 - weight) * variance).sqrt(), self.deviation)
        self.seen = self.seen | visited
        for total in self._sums.values():
            total.zero_()

    def state_dict(self) -> dict:
        return {"sums": {k: v.to("cpu", copy=True) for k, v in self._sums.items()}, "mean_abs": self.mean_abs.to("cpu", copy=True),
                "deviation": self.deviation.to("cpu", copy=True), "seen": self.seen.to("cpu", copy=True)}

    def load_state_dict(self, state: dict) -> None:
        device = self.mean_abs.device
        self._sums = {k: v.to(device, copy=True) for k, v in state["sums"].items()}
        self.mean_abs, self.deviation = state["mean_abs"].to(device, copy=True), state["deviation"].to(device, copy=True)
        self.seen = state["seen"].to(device, copy=True)
