"""Different Dirichlet data on different faces: one lift by transfinite interpolation.

With faces ``F_1 ... F_k`` carrying data ``g_1 ... g_k`` (each an expression, extended into the
domain by its own formula) and distance functions ``phi_j`` vanishing on ``F_j``, the lift

    g = sum_j w_j g_j,    w_j = prod_{i != j} phi_i / sum_l prod_{i != l} phi_i

(``w_j = phi_j^-1 / sum_l phi_l^-1``, Rvachev's transfinite interpolation) equals ``g_j`` on
``F_j``: there ``phi_j = 0``, so every ``w_l`` with ``l != j`` has the factor ``phi_j`` and
``w_j = 1``.  Where two faces meet (two ``phi`` vanish, the denominator too) the data of the
vanishing faces are averaged; with compatible data (equal on the shared edge) ``g`` is
continuous there.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from vpinn.expressions import Expression

Tensor = torch.Tensor
DistanceFunction = Callable[[Tensor], tuple[Tensor, Tensor]]
#: a denominator below this counts as a point where two faces meet
TINY = 1e-300


class BlendedLift:
    """``g = sum_j w_j g_j`` over ``parts`` = [(distance to F_j, data g_j)], with its gradient."""

    def __init__(self, parts: Sequence[tuple[DistanceFunction, Expression]]):
        if len(parts) < 2:
            raise ValueError("blending needs at least two parts")
        self.parts = list(parts)

    def __call__(self, x: Tensor) -> Tensor:
        """``g`` (b,) at ``x`` (b, 3)."""
        return self.value_and_gradient(x)[0]

    def value_and_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``g`` (b,) and ``grad g`` (b, 3), by the quotient and product rules."""
        phis = [distance(x) for distance, _ in self.parts]
        data = [g.value_and_gradient(x) for _, g in self.parts]
        products, gradients = [], []
        for j in range(len(phis)):
            others = [phis[i] for i in range(len(phis)) if i != j]
            value, grad = others[0]
            for phi, grad_phi in others[1:]:
                value, grad = value * phi, grad * phi[:, None] + value[:, None] * grad_phi
            products.append(value)
            gradients.append(grad)
        total, grad_total = sum(products), sum(gradients)
        meeting = total.abs() <= TINY
        safe = torch.where(meeting, torch.ones_like(total), total)
        vanishing = torch.stack([(phi <= TINY).to(x.dtype) for phi, _ in phis], 1)
        average = vanishing / vanishing.sum(1, keepdim=True).clamp_min(1)
        value, grad = torch.zeros_like(total), torch.zeros_like(x)
        for j, ((g, grad_g), p, grad_p) in enumerate(zip(data, products, gradients)):
            w = torch.where(meeting, average[:, j], p / safe)
            grad_w = torch.where(meeting[:, None], torch.zeros_like(x), (grad_p - w[:, None] * grad_total) / safe[:, None])
            value = value + w * g
            grad = grad + grad_w * g[:, None] + w[:, None] * grad_g
        return value, grad
