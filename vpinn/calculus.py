"""Spatial derivatives of closed-form fields.

Expressions (:class:`~vpinn.expressions.Expression`) are differentiated exactly and
symbolically, once; any other function of the points falls back to autograd.  Used for the
gradient of an exact solution (H1 errors), the Dirichlet lift's gradient and, through
:func:`flux_divergence`, ``f = -div(k grad u*)`` for ``source = "auto"``.  Results carry no
autograd graph.
"""

from __future__ import annotations

from typing import Callable

import torch

from vpinn.expressions import Expression

Tensor = torch.Tensor


def value_and_gradient(fn: Expression | Callable[[Tensor], Tensor], points: Tensor) -> tuple[Tensor, Tensor]:
    """``fn(points)`` (b,) and its gradient (b, 3), detached; from ``fn.value_and_gradient`` where
    it has one (expressions, blended lifts), else by autograd."""
    if isinstance(fn, Expression) or hasattr(fn, "value_and_gradient"):
        return fn.value_and_gradient(points)
    with torch.enable_grad():
        x = points.detach().requires_grad_(True)
        value = fn(x)
        if not value.requires_grad:  # constant: no dependence on x
            return value.detach(), torch.zeros_like(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad


def flux_divergence(coefficient: Expression, potential: Expression) -> Expression:
    """``div(k grad u) = sum_i d/dx_i (k du/dx_i)`` as an expression."""
    total = None
    for axis, du in enumerate(potential.gradient()):
        term = (coefficient * du).derivative(axis)
        total = term if total is None else total + term
    return total
