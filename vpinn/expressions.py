"""Safe scalar expressions of the coordinates: parsed, differentiated exactly, compiled to torch.

Problem files give fields as text, e.g. ``"3*pi**2*sin(pi*x)*sin(pi*y)*sin(pi*z)"``.  The text is
parsed with :mod:`ast` and every node is checked against a whitelist (numbers, ``x y z``, ``pi e``,
named constants, ``+ - * / **``, unary minus and the functions in :data:`FUNCTIONS`); anything
else is rejected with a one-line reason.  Nothing is ever passed to ``eval`` or ``exec``.

The checked tree becomes a :mod:`vpinn.symbolic` tree, so an :class:`Expression` can be
differentiated exactly (``source = "auto"`` builds ``f = -div(k grad u*)`` this way, once) and
combined with ``+ - * /``; evaluation runs a compiled straight-line program.
"""

from __future__ import annotations

import ast
import math
from typing import Mapping

import torch

from vpinn import symbolic
from vpinn.symbolic import FoldingError, Node, Program

VARIABLES: tuple[str, ...] = ("x", "y", "z")
BUILTIN_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
FUNCTIONS: tuple[str, ...] = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sinh", "cosh", "abs")

_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_MAX_LENGTH = 4000


class ExpressionError(ValueError):
    """The text is not a valid expression; the message says why, on one line."""


class Expression:
    """A scalar field ``f(x, y, z)``: call it with points (b, 3) to get values (b,).

    ``text`` is what the user wrote (or a description of how the expression was derived).
    """

    def __init__(self, text: str, tree: Node):
        self.text, self.tree = text, tree
        self._program = Program(tree)
        self._gradient: tuple[Expression, ...] | None = None

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and self.tree == other.tree

    def __hash__(self) -> int:
        return hash(self.tree)

    @property
    def constant_value(self) -> float | None:
        """The value if the expression does not depend on the coordinates, else None."""
        return self._program.constant

    @property
    def is_constant(self) -> bool:
        return self._program.constant is not None

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        return self._program(points)

    def derivative(self, axis: int) -> "Expression":
        """``d/dx_axis`` of this expression, exactly."""
        return Expression(f"d({self.text})/d{VARIABLES[axis]}", symbolic.derivative(self.tree, axis))

    def gradient(self) -> tuple["Expression", "Expression", "Expression"]:
        """The three partial derivatives (built once, then reused)."""
        if self._gradient is None:
            self._gradient = tuple(self.derivative(axis) for axis in range(3))
        return self._gradient

    def value_and_gradient(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values (b,) and gradients (b, 3) at ``points`` (b, 3)."""
        return self(points), torch.stack([d(points) for d in self.gradient()], dim=1)

    def _combine(self, op: str, other: "Expression | float", text: str) -> "Expression":
        tree = other.tree if isinstance(other, Expression) else symbolic.const(other)
        return Expression(text, symbolic.binary(op, self.tree, tree))

    def __add__(self, other):
        return self._combine("add", other, f"({self.text}) + ({_text(other)})")

    def __sub__(self, other):
        return self._combine("sub", other, f"({self.text}) - ({_text(other)})")

    def __mul__(self, other):
        return self._combine("mul", other, f"({self.text})*({_text(other)})")

    def __truediv__(self, other):
        return self._combine("div", other, f"({self.text})/({_text(other)})")

    def __neg__(self):
        return Expression(f"-({self.text})", symbolic.unary("neg", self.tree))

    __radd__ = __add__
    __rmul__ = __mul__


def _text(value: "Expression | float") -> str:
    return value.text if isinstance(value, Expression) else f"{value:g}"


def parse_expression(text: str, constants: Mapping[str, float] | None = None) -> Expression:
    """Parse ``text``; raise :class:`ExpressionError` if it is not allowed.

    Parameters
    ----------
    text:
        The expression, in Python syntax restricted to the whitelist above.
    constants:
        Extra named numbers (from the problem file's ``[constants]`` table).
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty expression")
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
        node = _convert(tree.body, {**BUILTIN_CONSTANTS, **(constants or {})})
    except SyntaxError as err:
        raise ExpressionError(f"syntax error in {text!r} at column {err.offset}: {err.msg}") from None
    except RecursionError:
        raise ExpressionError("expression is nested too deeply") from None
    except FoldingError as err:
        raise ExpressionError(f"a constant part fails: {err}") from None
    return Expression(text.strip(), node)


def _convert(node: ast.AST, names: Mapping[str, float]) -> Node:
    """Check one Python AST node against the whitelist and convert it (recursively)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numbers are allowed as literals, not {node.value!r}")
        return symbolic.const(node.value)
    if isinstance(node, ast.Name):
        if node.id in VARIABLES:
            return symbolic.var(VARIABLES.index(node.id))
        if node.id in names:
            return symbolic.const(names[node.id])
        if node.id in FUNCTIONS:
            raise ExpressionError(f"function '{node.id}' must be called, e.g. {node.id}(x)")
        allowed = ", ".join([*VARIABLES, *sorted(names)])
        raise ExpressionError(f"unknown name '{node.id}' (allowed: {allowed})")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _convert(node.operand, names)
        return operand if isinstance(node.op, ast.UAdd) else symbolic.unary("neg", operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return symbolic.binary(_BINARY[type(node.op)], _convert(node.left, names), _convert(node.right, names))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ExpressionError("'^' is not a power here: write x**2")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExpressionError("only plain function names may be called")
        if node.func.id not in FUNCTIONS:
            raise ExpressionError(f"unknown function '{node.func.id}' (allowed: {', '.join(sorted(FUNCTIONS))})")
        if node.keywords or len(node.args) != 1:
            raise ExpressionError(f"{node.func.id}() takes exactly one argument")
        return symbolic.unary(node.func.id, _convert(node.args[0], names))
    raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
