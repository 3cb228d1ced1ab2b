"""Activation functions with the first and second derivatives the fused Jacobian needs.

Each derivative is written in terms of the pre-activation ``z`` and the activation ``h = s(z)``
so that the cheapest form can be used (for tanh, ``s' = 1 - h^2`` needs no transcendental).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """``value(z)``, ``first(z, h) = s'(z)`` and ``second(z, h, first) = s''(z)``.

    ``needs_z`` says whether the derivatives read ``z`` (else it need not be kept for backward);
    ``value_`` computes the activation in place; ``ratio_(t, z, h)``, where ``s''/s'`` has a
    closed form that is safe everywhere, multiplies ``t`` by it in place (else None).
    """

    name: str
    value: Callable[[Tensor], Tensor]
    value_: Callable[[Tensor], Tensor]
    first: Callable[[Tensor | None, Tensor], Tensor]
    second: Callable[[Tensor | None, Tensor, Tensor], Tensor]
    needs_z: bool
    ratio_: Callable[[Tensor, Tensor | None, Tensor], Tensor] | None = None


def _tanh_first(z: Tensor | None, h: Tensor) -> Tensor:
    return torch.addcmul(torch.ones((), dtype=h.dtype, device=h.device), h, h, value=-1.0)


def _silu_parts(z: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(z)
    return s, 1 - s


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(
        "tanh", torch.tanh, torch.tanh_, _tanh_first, lambda z, h, d1: (h * d1).mul_(-2.0), needs_z=False,
        ratio_=lambda t, z, h: t.mul_(h).mul_(-2.0),  # tanh'' / tanh' = -2 tanh
    ),
    "sin": Activation(
        "sin", torch.sin, torch.sin_, lambda z, h: torch.cos(z), lambda z, h, d1: -h, needs_z=True
    ),
    "silu": Activation(
        "silu",
        torch.nn.functional.silu,
        lambda z: torch.nn.functional.silu(z, inplace=True),
        lambda z, h: (lambda s, c: s * (1 + z * c))(*_silu_parts(z)),
        lambda z, h, d1: (lambda s, c: s * c * (2 + z * (c - s)))(*_silu_parts(z)),
        needs_z=True,
    ),
}
