"""Safe scalar expressions of the coordinates: parsed, differentiated exactly, compiled to torch.

Problem files give fields as text, e.g. ``"3*pi**2*sin(pi*x)*sin(pi*y)*sin(pi*z)"``.  The text is
parsed with :mod:`ast` and every node is checked against a whitelist (numbers, ``x y z``, ``pi e``,
named constants, ``+ - * / **``, unary minus and the functions in :data:`FUNCTIONS`); anything
else is rejected with a one-line reason.  Nothing is ever passed to ``eval`` or ``exec``.

The checked tree becomes a :mod:`vpinn.symbolic` tree, so an :class:`Expression` can be
differentiated exactly (``source = "auto"`` builds ``f = -div(k grad u*)`` this way, once) and
combined with ``+ - * /``; evaluation runs a compiled straight-line program.

Everything that could fail later fails here instead, as an :class:`ExpressionError`: numbers
that are not finite floats (``1e309``, a 400-digit integer, an ``inf`` constant, a constant
part that overflows), text longer than :data:`_MAX_LENGTH` or nested deeper than
:data:`_MAX_DEPTH`, and gradients that cannot be built.  The checks walk the tree with an
explicit stack, so long sums and products are fine.
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
#: deepest nesting accepted; each operator of a chain like ``x*x*...*x`` counts one level
_MAX_DEPTH = 1000


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
        """``d/dx_axis`` of this expression, exactly; :class:`ExpressionError` if a constant part
        of it has no finite value (e.g. ``log(0)`` from ``0**x``)."""
        try:
            tree = symbolic.derivative(self.tree, axis)
        except FoldingError as err:
            raise ExpressionError(f"its derivative d/d{VARIABLES[axis]} fails: {err}") from None
        return Expression(f"d({self.text})/d{VARIABLES[axis]}", tree)

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

    The gradient is built here too, so that an expression whose derivative fails is refused at
    parse time rather than when the gradient is first needed (mid-training, for H1 errors).

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
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        shown = _abbreviate(repr(source), 60)
        raise ExpressionError(f"syntax error in {shown} at column {err.offset}: {err.msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression is nested too deeply for Python's parser") from None
    try:
        expression = Expression(source, _convert(tree.body, {**BUILTIN_CONSTANTS, **(constants or {})}, source))
    except FoldingError as err:
        raise ExpressionError(f"a constant part fails: {err}") from None
    expression.gradient()
    return expression


def _convert(root: ast.AST, names: Mapping[str, float], source: str) -> Node:
    """Check a Python AST against the whitelist and convert it to a symbolic tree.

    All nodes are checked first, parents before children (so the first offence from the left is
    reported), then built children first; both passes use explicit stacks, not recursion.
    """
    built: dict[int, Node] = {}
    for node in reversed(_checked(root, names, source)):
        built[id(node)] = _build(node, [built[id(child)] for child in _operands(node)], names)
    return built[id(root)]


def _checked(root: ast.AST, names: Mapping[str, float], source: str) -> list[ast.AST]:
    """The nodes of ``root`` in pre-order, each checked by :func:`_check`, at most
    :data:`_MAX_DEPTH` deep."""
    order: list[ast.AST] = []
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {_MAX_DEPTH} levels (each operator in a chain is one)")
        _check(node, names, source)
        order.append(node)
        stack.extend((child, depth + 1) for child in reversed(_operands(node)))
    return order


def _operands(node: ast.AST) -> list[ast.AST]:
    """The sub-expressions of an already checked node."""
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.Call):
        return [node.args[0]]
    return []


def _check(node: ast.AST, names: Mapping[str, float], source: str) -> None:
    """Raise :class:`ExpressionError` if ``node`` itself (not its operands) is not allowed."""
    if isinstance(node, ast.Constant):
        _check_literal(node, source)
    elif isinstance(node, ast.Name):
        _check_name(node, names)
    elif isinstance(node, ast.Call):
        _check_call(node)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ExpressionError("'^' is not a power here: write x**2")
    elif not _is_operator(node):
        raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")


def _is_operator(node: ast.AST) -> bool:
    """``+a``, ``-a`` or ``a op b`` for ``op`` in ``+ - * / **``."""
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, (ast.USub, ast.UAdd))
    return isinstance(node, ast.BinOp) and type(node.op) in _BINARY


def _check_literal(node: ast.Constant, source: str) -> None:
    """Only numbers that are finite floats (``1e309`` parses as ``inf``)."""
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise ExpressionError(f"only numbers are allowed as literals, not {node.value!r}")
    literal = ast.get_source_segment(source, node) or repr(node.value)
    _check_finite(node.value, f"number {_abbreviate(literal)} at column {node.col_offset + 1}")


def _check_name(node: ast.Name, names: Mapping[str, float]) -> None:
    """A coordinate, or a named constant with a finite value."""
    if node.id in VARIABLES:
        return
    if node.id in names:
        _check_finite(names[node.id], f"constant '{node.id}'")
        return
    if node.id in FUNCTIONS:
        raise ExpressionError(f"function '{node.id}' must be called, e.g. {node.id}(x)")
    allowed = ", ".join([*VARIABLES, *sorted(names)])
    raise ExpressionError(f"unknown name '{node.id}' (allowed: {allowed})")


def _check_call(node: ast.Call) -> None:
    """Only ``f(a)`` with ``f`` in :data:`FUNCTIONS` and one positional argument."""
    if not isinstance(node.func, ast.Name):
        raise ExpressionError("only plain function names may be called")
    if node.func.id not in FUNCTIONS:
        raise ExpressionError(f"unknown function '{node.func.id}' (allowed: {', '.join(sorted(FUNCTIONS))})")
    if node.keywords or len(node.args) != 1:
        raise ExpressionError(f"{node.func.id}() takes exactly one argument")


def _check_finite(value: object, what: str) -> None:
    """Raise :class:`ExpressionError` naming ``what`` unless ``value`` is a finite float (a
    400-digit integer does not even convert)."""
    try:
        number = float(value)
    except OverflowError:
        raise ExpressionError(f"{what} is too large for a float (the largest is about 1.8e308)") from None
    except (TypeError, ValueError):
        raise ExpressionError(f"{what} is not a number: {_abbreviate(repr(value))}") from None
    if not math.isfinite(number):
        raise ExpressionError(f"{what} is {number}, not a finite number (floats end near 1.8e308)")


def _abbreviate(text: str, limit: int = 24) -> str:
    """``text``, or its start and its length if it is longer than ``limit``: messages stay short."""
    return text if len(text) <= limit else f"{text[:limit - 8]}... ({len(text)} characters)"


def _build(node: ast.AST, operands: list[Node], names: Mapping[str, float]) -> Node:
    """The symbolic node for a checked AST node whose operands are already built."""
    if isinstance(node, ast.Constant):
        return symbolic.const(float(node.value))
    if isinstance(node, ast.Name):
        return symbolic.var(VARIABLES.index(node.id)) if node.id in VARIABLES else symbolic.const(names[node.id])
    if isinstance(node, ast.UnaryOp):
        return operands[0] if isinstance(node.op, ast.UAdd) else symbolic.unary("neg", operands[0])
    if isinstance(node, ast.BinOp):
        return symbolic.binary(_BINARY[type(node.op)], *operands)
    return symbolic.unary(node.func.id, operands[0])
