"""Expressions: values, constant folding, named constants, and rejection of everything else."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vpinn.expressions import ExpressionError, parse_expression


def points(n: int = 50) -> torch.Tensor:
    return torch.rand(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2 - 0.5


@pytest.mark.parametrize(
    "text, reference",
    [
        ("3*pi**2*sin(pi*x)*sin(pi*y)*sin(pi*z)", lambda x, y, z: 3 * np.pi**2 * np.sin(np.pi * x) * np.sin(np.pi * y) * np.sin(np.pi * z)),
        ("-x + y/2 - z**3", lambda x, y, z: -x + y / 2 - z**3),
        ("exp(-x**2)*cos(y) + tanh(z) - sinh(x)*cosh(y)", lambda x, y, z: np.exp(-x**2) * np.cos(y) + np.tanh(z) - np.sinh(x) * np.cosh(y)),
        ("sqrt(abs(x)) + log(1 + y**2) + tan(z/4)", lambda x, y, z: np.sqrt(np.abs(x)) + np.log(1 + y**2) + np.tan(z / 4)),
        ("e**x", lambda x, y, z: np.e**x),
    ],
)
def test_values_match_numpy(text, reference):
    p = points()
    expected = reference(*p.numpy().T)
    np.testing.assert_allclose(parse_expression(text)(p).numpy(), expected, rtol=1e-13, atol=1e-13)


def test_constant_parts_are_folded():
    expression = parse_expression("2*pi*k", {"k": 0.5})
    assert expression.is_constant and expression.constant_value == pytest.approx(math.pi)
    values = expression(points(4))
    assert values.shape == (4,) and torch.all(values == math.pi)


def test_named_constants():
    p = points()
    np.testing.assert_allclose(parse_expression("a*x + b", {"a": 2.0, "b": -1.0})(p).numpy(), 2 * p[:, 0].numpy() - 1)


@pytest.mark.parametrize(
    "text, words",
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("x.real", "Attribute is not allowed"),
        ("(lambda: 1)()", "only plain function names"),
        ("[x][0]", "Subscript is not allowed"),
        ("x^2", "write x**2"),
        ("foo(x)", "unknown function 'foo'"),
        ("w + 1", "unknown name 'w'"),
        ("sin", "must be called"),
        ("sin(x, y)", "exactly one argument"),
        ("sin(x=1)", "exactly one argument"),
        ("'text'", "only numbers"),
        ("True", "only numbers"),
        ("x if y else z", "IfExp is not allowed"),
        ("1/0", "fails"),
        ("sqrt(-1)", "fails"),
        ("x +", "syntax error"),
        ("", "empty"),
        ("(" * 300 + "x" + ")" * 300, "too many nested parentheses"),
    ],
)
def test_rejections_are_one_line_reasons(text, words):
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    message = str(info.value)
    assert words in message and "\n" not in message
