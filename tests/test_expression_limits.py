"""Expressions at the limits: non-finite and huge numbers, long chains, deep nesting, shared
subtrees.  Each is either refused at parse time with a one-line ExpressionError or works
(derivatives and values match a reference), never failing later."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch

from vpinn.expressions import Expression, ExpressionError, parse_expression


def points(n: int = 40) -> torch.Tensor:
    return torch.rand(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 - 0.5


def rejection(text: str, constants: dict | None = None) -> str:
    """The message of the ExpressionError that parsing ``text`` raises, checked to be one line."""
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, constants)
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "text, words",
    [
        ("1e309*x", "number 1e309 at column 1 is inf"),
        ("x - 2E400", "number 2E400 at column 5 is inf"),
        ("1e200*1e200", "1e+200 * 1e+200 is not a finite real number"),
        ("1e200*(1e200*x)", "1e+200 * 1e+200 is not a finite real number"),
        ("x*1e200*1e200", "1e+200 * 1e+200 is not a finite real number"),
        ("2**10000 + x", "2 ** 10000 overflows"),
        ("exp(1000)*y", "exp(1000) overflows"),
        ("(-8)**(1/3)*x", "(-8) ** 0.333333 is not a finite real number"),
    ],
)
def test_non_finite_constants_are_refused(text, words):
    assert words in rejection(text)


@pytest.mark.parametrize(
    "value, words", [(float("inf"), "constant 'k' is inf"), (float("nan"), "constant 'k' is nan"), ("abc", "not a number")]
)
def test_non_finite_named_constants_are_refused(value, words):
    assert words in rejection("k*x + 1", {"k": value})


def test_unused_named_constants_are_not_checked():
    assert parse_expression("x", {"k": float("inf")})(points(3)).shape == (3,)


def test_huge_integer_literals_are_refused_and_large_finite_ones_kept():
    message = rejection("x + " + "1" * 400)
    assert "(400 characters) at column 5 is too large for a float" in message and len(message) < 120
    assert parse_expression("1" + "0" * 300).constant_value == 1e300


def test_derivative_failures_are_reported_at_parse_time():
    assert "its derivative d/dx fails: log(0)" in rejection("0**x")


def test_long_product_values_and_derivatives_match_numpy():
    expression = parse_expression("*".join(["x", "y", "cos(z)"] * 100))  # 300 factors
    p = points()
    x, y, z = p.numpy().T
    np.testing.assert_allclose(expression(p).numpy(), x**100 * y**100 * np.cos(z) ** 100, rtol=1e-10)
    d_dx, _, d_dz = (d(p).numpy() for d in expression.gradient())
    np.testing.assert_allclose(d_dx, 100 * x**99 * y**100 * np.cos(z) ** 100, rtol=1e-10)
    np.testing.assert_allclose(d_dz, -100 * x**100 * y**100 * np.cos(z) ** 99 * np.sin(z), rtol=1e-10, atol=1e-300)
    d2_dx2 = expression.gradient()[0].derivative(0)(p).numpy()
    np.testing.assert_allclose(d2_dx2, 9900 * x**98 * y**100 * np.cos(z) ** 100, rtol=1e-10)


def test_long_sum_at_the_depth_limit_and_its_second_derivative():
    expression = parse_expression("+".join(["x*y"] * 999))  # 998 additions, then * and x: depth 1000
    p = points()
    x, y, _ = p.numpy().T
    np.testing.assert_allclose(expression(p).numpy(), 999 * x * y, rtol=1e-12)
    mixed = expression.gradient()[0].derivative(1)
    np.testing.assert_allclose(mixed(p).numpy(), np.full(len(p), 999.0), rtol=1e-12)
    assert "nested deeper than 1000" in rejection("+".join(["x*y"] * 1000))
    assert len(repr(expression.tree)) < 1000  # printing a deep tree neither recurses nor floods


@pytest.mark.parametrize(
    "text",
    [
        "*".join(["x"] * 1001),
        "x**" * 1300 + "x",
        "-" * 3000 + "x",
        "(" * 300 + "x" + ")" * 300,
        "sqrt(" * 3000 + "x" + ")" * 3000,
    ],
    ids=["product-1001", "power-tower-1300", "minus-3000", "parentheses-300", "sqrt-3000"],
)
def test_too_deep_or_too_long_is_refused_in_one_line(text):
    assert len(rejection(text)) < 200


def nested_sqrt_reference(p: torch.Tensor, depth: int, k) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u = sqrt(1 + sqrt(1 + ... x)), du/dx and -d/dx (k du/dx), by autograd."""
    x = p[:, 0].clone().requires_grad_(True)
    u = x
    for _ in range(depth):
        u = torch.sqrt(1 + u)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (dflux,) = torch.autograd.grad((k(x) * du).sum(), x)
    return u.detach(), du.detach(), -dflux


def test_nested_sqrt_sets_up_fast_with_compact_programs():
    depth = 190
    start = time.perf_counter()
    u = parse_expression("sqrt(1+" * depth + "x" + ")" * depth)
    k = parse_expression("2 + sin(x)")
    source: Expression = -sum((k * du).derivative(axis) for axis, du in enumerate(u.gradient()))  # -div(k grad u)
    p = points()
    value, gradient = u.value_and_gradient(p)
    f = source(p)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"set-up took {elapsed:.1f} s"
    u_ref, du_ref, f_ref = nested_sqrt_reference(p, depth, lambda x: 2 + torch.sin(x))
    torch.testing.assert_close(value, u_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient[:, 0], du_ref, rtol=1e-10, atol=1e-300)
    torch.testing.assert_close(f, f_ref, rtol=1e-9, atol=1e-300)
    assert torch.all(gradient[:, 1:] == 0)
    assert len(u.gradient()[0]._program.steps) < 5 * depth and len(source._program.steps) < 15 * depth


def test_equal_trees_are_one_object_and_survive_pickling():
    a, b = parse_expression("sin(x)*y + 1"), parse_expression("sin(x) * y + 1")
    assert a.tree is b.tree and a == b and hash(a) == hash(b)
    assert pickle.loads(pickle.dumps(a.tree)) is a.tree
