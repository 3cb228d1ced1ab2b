"""The sampler protocol: which quadrature points a training step sees, and how they are reweighted.

For a rule sum ``S = sum_{i<N} w_i f(x_i)`` a sampler returns indices ``I`` (b,) and factors ``c``
(a float, or a tensor (b,) when points carry different weights) such that
``sum_j c_j w_{I_j} f(x_{I_j})`` is an unbiased estimate of ``S``.  Every sampler works on the
compute device in fixed shapes and reads nothing back to the host, so a training step on CUDA
never waits for it; every random choice is a hash of plain integers (:mod:`vpinn.sampling.hashing`),
so its state is a few integers (and, for the adaptive ones, small per-stratum tables) that a
checkpoint carries to any device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Sampler(ABC):
    """Base of the samplers; see the module docstring.

    ``granule``: batches must be multiples of it (the stratified sampler's strata count);
    ``minimum``: the smallest batch it can draw unbiasedly; ``population``: the number of points
    a batch and its parts are drawn from without replacement (the uniform sampler's epochs: the
    rule's size), for the finite-population correction of the noise diagnostics, or None for
    draws that are independent (the randomised samplers).
    """

    size: int
    granule: int = 1
    minimum: int = 1
    population: int | None = None

    @abstractmethod
    def sample(self, batch: int) -> tuple[torch.Tensor, float | torch.Tensor]:
        """Indices (batch,) int64 on the device and the estimator's factors."""

    def observe(self, contributions: torch.Tensor) -> None:
        """``w_i f(x_i)`` (detached, (b,)) at the points of the last draw.  Adaptive samplers
        (Neyman allocation, importance) update their running per-stratum estimates from them;
        the others have nothing to learn."""

    @property
    @abstractmethod
    def epochs(self) -> float:
        """Points drawn so far over the rule's size (for epoch samplers: epochs completed)."""

    def check_batch(self, batch: int) -> None:
        """Refuse a batch this sampler cannot draw unbiasedly."""
        if batch < self.minimum or batch % self.granule:
            raise ValueError(f"a batch of {batch} points; this sampler needs a multiple of {self.granule} "
                             f"of at least {self.minimum}")

    def refuse_foreign(self, state: dict) -> None:
        """Refuse a state written by a sampler of another kind, rule size or strata count."""
        mine = self.state_dict()
        for key in ("kind", "size", "strata"):
            if key in mine and state.get(key) != mine[key]:
                raise ValueError(f"sampler state with {key} {state.get(key)!r}, not {mine[key]!r}")

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to continue the same draws: integers and small CPU tensors."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; refuses a state of a rule of another size."""
