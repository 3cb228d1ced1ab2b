"""Turn plain TOML data into frozen dataclasses, checking every key and type.

The dataclasses in :mod:`vpinn.problem.spec` are the schema: their annotations give each key's
type and their defaults are the only place defaults live.  :func:`build` walks a dataclass and a
dict together and raises :class:`~vpinn.errors.SpecError` naming the dotted key for the first
problem: an unknown key (with a "did you mean" suggestion), a missing required key, a wrong type,
a value outside a ``Literal`` set, or an invalid expression.

Supported annotations: ``bool int float str``, ``dict`` (a table of named numbers), ``Literal[...]``, ``tuple[T, ...]`` and fixed
``tuple[T, T, T]``, nested dataclasses, unions of dataclasses told apart by their ``type`` field
(each ``Literal`` value of a class's first field, ``type`` or ``optimizer``, selects it), :class:`~vpinn.expressions.Expression`
(text compiled with the file's constants), unions with a ``Literal`` keyword such as ``"auto"``,
and unions of a scalar with a list (``Expression | tuple[Expression, ...]``: a list selects the
tuple) -- all optionally ``| None`` (absent means None).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from typing import Any, Literal, Mapping

from vpinn.errors import SpecError
from vpinn.expressions import Expression, ExpressionError, parse_expression


def build(cls: type, data: Any, constants: Mapping[str, float] | None = None, key: str = "") -> Any:
    """Validate ``data`` against dataclass ``cls`` and return the instance.

    ``constants`` are the named numbers expressions may use; ``key`` is the dotted path of
    ``data`` in the file, used in error messages.
    """
    return _convert(cls, data, key, constants or {})


def _describe(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        return "a number" if tp is float else "an integer"
    if tp is str:
        return "a string"
    if tp is dict:
        return "a table of numbers"
    if tp is Expression:
        return "an expression string"
    if _is_table(tp):
        return "a table"
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list"
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    return str(tp)


class _Short(reprlib.Repr):
    """Short reprs; an integer too long to print whole is shown by its size."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxstring = 2, 4, 4, 60

    def repr_int(self, value: int, level: int) -> str:
        return repr(value) if value.bit_length() <= 128 else f"an integer of about {value.bit_length() * 0.30103:.0f} digits"


_SHORT = _Short()


def shown(value: Any) -> str:
    """``repr(value)`` cut short (nested lists, long strings, huge integers), for one-line messages."""
    return _SHORT.repr(value)


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_table(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _convert(tp: Any, value: Any, key: str, constants: Mapping[str, float]) -> Any:
    origin = typing.get_origin(tp)
    if _is_table(tp):
        return _build_dataclass(tp, value, key, constants)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(tp), value, key, constants)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise SpecError(key, f"must be {_describe(tp)}, not {shown(value)}{suggest(value, choices)}")
        return value
    if origin is tuple:
        return _convert_tuple(typing.get_args(tp), value, key, constants)
    if tp is dict:
        return _convert_numbers(value, key)
    if tp is Expression:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SpecError(key, f"must be {_describe(tp)}, not {shown(value)}")
        try:
            return parse_expression(str(value), constants)
        except ExpressionError as err:
            raise SpecError(key, str(err)) from None
    return _convert_scalar(tp, value, key)


def _convert_numbers(value: Any, key: str) -> dict[str, float]:
    """A table of named numbers, e.g. ``[constants]``."""
    if not isinstance(value, dict):
        raise SpecError(key, f"must be a table, not {shown(value)}")
    prefix = f"{key}." if key else ""
    for name in value:
        if not name.isidentifier():
            raise SpecError(f"{prefix}{name}", "must be a plain name (letters, digits, _)")
    return {name: _convert_scalar(float, v, f"{prefix}{name}") for name, v in value.items()}


def _convert_scalar(tp: type, value: Any, key: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(key, f"must be true or false, not {shown(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(key, f"must be a string, not {shown(value)}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(key, f"must be {_describe(tp)}, not {shown(value)}")
        if not math.isfinite(value):
            raise SpecError(key, f"must be finite, not {shown(value)}")
        if tp is int:
            if value != int(value):
                raise SpecError(key, f"must be an integer, not {shown(value)}")
            return int(value)
        return float(value)
    raise TypeError(f"schema type {tp!r} is not supported")  # a bug in spec.py, not a user error


def _convert_tuple(args: tuple, value: Any, key: str, constants: Mapping[str, float]) -> tuple:
    if not isinstance(value, list):
        value = [value] if args[-1] is Ellipsis and not isinstance(value, dict) else value
    if not isinstance(value, list):
        raise SpecError(key, f"must be a list, not {shown(value)}")
    if args[-1] is Ellipsis:
        item_types = [args[0]] * len(value)
    else:
        if len(value) != len(args):
            raise SpecError(key, f"must have {len(args)} entries, not {len(value)}")
        item_types = list(args)
    return tuple(_convert(t, v, f"{key}[{i}]", constants) for i, (t, v) in enumerate(zip(item_types, value)))


def _convert_union(options: tuple, value: Any, key: str, constants: Mapping[str, float]) -> Any:
    options = tuple(t for t in options if t is not type(None))  # optional tables: absent means None
    if len(options) == 1:
        return _convert(options[0], value, key, constants)
    tables = [t for t in options if _is_table(t)]
    if tables:
        return _convert_tagged(tables, value, key, constants)
    keywords = [t for t in options if typing.get_origin(t) is Literal]
    for option in keywords:
        if value in typing.get_args(option):
            return value
    rest = [t for t in options if t not in keywords]
    if len(rest) == 2:  # a scalar or a list: the value's shape chooses
        rest = [t for t in rest if (typing.get_origin(t) is tuple) == isinstance(value, list)]
    if len(rest) != 1:
        raise TypeError(f"union {options!r} is not supported")
    return _convert(rest[0], value, key, constants)


def _convert_tagged(tables: list[type], value: Any, key: str, constants: Mapping[str, float]) -> Any:
    """A union of tables told apart by their first field (``type``, or ``optimizer`` for a
    training phase), a ``Literal`` naming each class."""
    if not isinstance(value, dict):
        raise SpecError(key, f"must be a table, not {shown(value)}")
    tag_key = dataclasses.fields(tables[0])[0].name
    by_tag = {tag: t for t in tables for tag in typing.get_args(typing.get_type_hints(t)[tag_key])}
    default = dataclasses.fields(tables[0])[0].default
    if tag_key not in value and default is dataclasses.MISSING:
        raise SpecError(f"{key}.{tag_key}", f"required key is missing (one of {', '.join(map(repr, by_tag))})")
    tag = value.get(tag_key, default)
    if not isinstance(tag, str) or tag not in by_tag:
        raise SpecError(f"{key}.{tag_key}", f"must be one of {', '.join(map(repr, by_tag))}, not {shown(tag)}{suggest(tag, by_tag)}")
    return _build_dataclass(by_tag[tag], value, key, constants)


def _build_dataclass(cls: type, value: Any, key: str, constants: Mapping[str, float], base: Any = None) -> Any:
    """``cls`` from the table ``value``; keys it leaves out come from ``base`` (the field's own
    default table, e.g. ``[quadrature.evaluation]``'s) if given, else from ``cls``'s defaults."""
    if not isinstance(value, dict):
        raise SpecError(key, f"must be a table, not {shown(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{key}." if key else ""
    for name in value:
        if name not in fields:
            raise SpecError(f"{prefix}{name}", f"unknown key{suggest(name, fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in value and _is_table(hints[name]) and dataclasses.is_dataclass(f.default):
            kwargs[name] = _build_dataclass(hints[name], value[name], f"{prefix}{name}", constants, f.default)
        elif name in value:
            kwargs[name] = _convert(hints[name], value[name], f"{prefix}{name}", constants)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{prefix}{name}", "required key is missing")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except SpecError as err:
        raise err.under(key) from None
