"""Symbolic scalar fields of ``x, y, z``: trees, exact derivatives, and compiled evaluation.

Expressions from problem files become trees of :class:`Node`.  The constructors simplify as
they build (constants fold, ``0 * a -> 0``, ``1 * a -> a``, ``a + 0 -> a``), so derivatives of
closed-form solutions stay small: ``d/dx`` of ``sin(pi*x)*sin(pi*y)`` is
``pi*cos(pi*x)*sin(pi*y)``.  :func:`derivative` applies the usual rules exactly.

:class:`Program` compiles a tree into a straight-line list of torch operations in which every
distinct subexpression appears once (common-subexpression elimination), so the Laplacian of
``sin(pi x) sin(pi y) sin(pi z)`` evaluates each sine once.  A Program evaluated on 1e4 points
costs a few dozen element-wise kernels, about ten times less than differentiating the same
expression with autograd at every training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Node:
    """``op`` applied to ``args``; ``op`` is "const" (value), "var" (axis), a unary or binary op."""

    op: str
    args: tuple = ()
    value: float = 0.0

    def __repr__(self) -> str:
        if self.op == "const":
            return f"{self.value:g}"
        if self.op == "var":
            return "xyz"[int(self.value)]
        if self.op in BINARY:
            return f"({self.args[0]!r} {BINARY_SYMBOLS[self.op]} {self.args[1]!r})"
        return f"{self.op}({self.args[0]!r})"


#: unary op -> (torch function, math function for folding)
UNARY: dict[str, tuple[Callable, Callable]] = {
    "neg": (torch.neg, lambda a: -a),
    "sin": (torch.sin, math.sin),
    "cos": (torch.cos, math.cos),
    "tan": (torch.tan, math.tan),
    "exp": (torch.exp, math.exp),
    "log": (torch.log, math.log),
    "sqrt": (torch.sqrt, math.sqrt),
    "tanh": (torch.tanh, math.tanh),
    "sinh": (torch.sinh, math.sinh),
    "cosh": (torch.cosh, math.cosh),
    "abs": (torch.abs, abs),
    "sign": (torch.sign, lambda a: float((a > 0) - (a < 0))),
}
BINARY: dict[str, Callable] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}
BINARY_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


class FoldingError(ValueError):
    """A constant subexpression has no finite real value (1/0, sqrt(-1), ...)."""


def const(value: float) -> Node:
    return Node("const", value=float(value))


def var(axis: int) -> Node:
    return Node("var", value=float(axis))


def is_const(node: Node, value: float | None = None) -> bool:
    return node.op == "const" and (value is None or node.value == value)


def _fold(fn: Callable, *values: float) -> Node:
    try:
        result = fn(*values)
    except (ZeroDivisionError, OverflowError, ValueError) as err:
        raise FoldingError(str(err)) from None
    if isinstance(result, complex) or not math.isfinite(result):
        raise FoldingError(f"evaluates to {result}")
    return const(result)


def unary(op: str, a: Node) -> Node:
    """``op(a)``, folded if ``a`` is constant."""
    if is_const(a):
        return _fold(UNARY[op][1], a.value)
    if op == "neg" and a.op == "neg":
        return a.args[0]
    return Node(op, (a,))


def binary(op: str, a: Node, b: Node) -> Node:
    """``a op b`` with constant folding and the identities of 0 and 1."""
    if is_const(a) and is_const(b):
        return _fold(BINARY[op], a.value, b.value)
    if op == "add":
        if is_const(a, 0.0):
            return b
        if is_const(b, 0.0):
            return a
    elif op == "sub":
        if is_const(b, 0.0):
            return a
        if is_const(a, 0.0):
            return unary("neg", b)
    elif op == "mul":
        if is_const(a, 0.0) or is_const(b, 0.0):
            return const(0.0)
        if is_const(a, 1.0):
            return b
        if is_const(b, 1.0):
            return a
        if is_const(a, -1.0):
            return unary("neg", b)
        if is_const(b):  # constants first: keeps trees canonical for sharing
            return binary("mul", b, a)
        if is_const(a) and b.op == "mul" and is_const(b.args[0]):  # c1 * (c2 * t) -> (c1 c2) * t
            return binary("mul", const(a.value * b.args[0].value), b.args[1])
        if is_const(a) and b.op == "neg":  # c * (-t) -> (-c) * t
            return binary("mul", const(-a.value), b.args[0])
    elif op == "div":
        if is_const(b, 0.0):
            raise FoldingError("division by zero")
        if is_const(a, 0.0):
            return const(0.0)
        if is_const(b, 1.0):
            return a
    elif op == "pow":
        if is_const(b, 0.0):
            return const(1.0)
        if is_const(b, 1.0):
            return a
    return Node(op, (a, b))


def derivative(node: Node, axis: int) -> Node:
    """``d node / d x_axis``, exactly, simplified as it is built."""
    op, args = node.op, node.args
    if op == "const":
        return const(0.0)
    if op == "var":
        return const(1.0 if int(node.value) == axis else 0.0)
    if op in BINARY:
        a, b = args
        da, db = derivative(a, axis), derivative(b, axis)
        if op in ("add", "sub"):
            return binary(op, da, db)
        if op == "mul":
            return binary("add", binary("mul", da, b), binary("mul", a, db))
        if op == "div":
            return binary("sub", binary("div", da, b), binary("div", binary("mul", a, db), binary("mul", b, b)))
        if is_const(b):  # a**c
            return binary("mul", binary("mul", b, binary("pow", a, const(b.value - 1))), da)
        # a**b = exp(b log a): d = a**b (db log a + b da / a)
        return binary("mul", node, binary("add", binary("mul", db, unary("log", a)), binary("div", binary("mul", b, da), a)))
    a = args[0]
    da = derivative(a, axis)
    if is_const(da, 0.0):
        return const(0.0)
    outer = {
        "neg": lambda: const(-1.0),
        "sin": lambda: unary("cos", a),
        "cos": lambda: unary("neg", unary("sin", a)),
        "tan": lambda: binary("div", const(1.0), binary("mul", unary("cos", a), unary("cos", a))),
        "exp": lambda: node,
        "log": lambda: binary("div", const(1.0), a),
        "sqrt": lambda: binary("div", const(0.5), node),
        "tanh": lambda: binary("sub", const(1.0), binary("mul", node, node)),
        "sinh": lambda: unary("cosh", a),
        "cosh": lambda: unary("sinh", a),
        "abs": lambda: unary("sign", a),
        "sign": lambda: const(0.0),
    }[op]()
    return binary("mul", outer, da)


class Program:
    """A tree compiled into straight-line torch code with shared subexpressions.

    Call it with points (b, 3) to get values (b,) in the points' dtype and device.
    """

    def __init__(self, root: Node):
        self.constant = root.value if is_const(root) else None
        self.steps: list[tuple[str, object, tuple[int, ...]]] = []  # (op, payload, operand registers)
        self._registers: dict[tuple, int] = {}
        self.output = self._emit(root)

    def _emit(self, node: Node) -> int:
        operands = tuple(self._emit(a) for a in node.args)
        payload = node.value if node.op in ("const", "var") else None
        key = (node.op, payload, operands)
        if key not in self._registers:
            self.steps.append(key)
            self._registers[key] = len(self.steps) - 1
        return self._registers[key]

    def __call__(self, points: Tensor) -> Tensor:
        if self.constant is not None:
            return torch.full(points.shape[:1], self.constant, dtype=points.dtype, device=points.device)
        registers: list = []
        for op, payload, operands in self.steps:
            if op == "const":
                registers.append(payload)
            elif op == "var":
                registers.append(points[:, int(payload)])
            elif op in BINARY:
                registers.append(BINARY[op](registers[operands[0]], registers[operands[1]]))
            else:
                registers.append(UNARY[op][0](registers[operands[0]]))
        return registers[self.output]
