"""Argument helpers shared by the commands (solve, bench, memory, compare)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from vpinn.devices import choose_device
from vpinn.errors import VpinnError

DEFAULT_PROBLEM = "problems/poisson_cube.toml"


def default_problem() -> str:
    """The bundled default problem: relative to the working directory, else to the checkout."""
    if Path(DEFAULT_PROBLEM).exists():
        return DEFAULT_PROBLEM
    return str(Path(__file__).resolve().parent.parent / DEFAULT_PROBLEM)


def device_name(requested: str | None) -> str:
    """The ``--device`` to use, as a string (a user error names the flag)."""
    try:
        return str(choose_device(requested))
    except VpinnError as err:
        raise VpinnError(f"--device {requested}: {err}") from None


def expanded_path(text: str) -> str:
    """An argparse type: a path with ``~`` expanded (as a shell would, also in ``--out=~/x``)."""
    return str(Path(text).expanduser())


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def positive_count(text: str) -> int:
    """An argparse type: a positive integer, also written like ``1e6``."""
    try:
        (value,) = parse_sizes(text, "")
    except (VpinnError, ValueError):
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}") from None
    return value


def parse_setting(text: str) -> tuple[str, object]:
    """``"train.steps=500"`` -> ``("train.steps", 500)``; the value is read as TOML, else as a string."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. train.steps=500, not {text!r}")
    try:
        parsed = tomllib.loads(f"value = {value}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    except RecursionError:
        raise argparse.ArgumentTypeError(f"{key.strip()}: the value's arrays or tables are nested too deeply") from None
    except ValueError:  # an integer of more digits than Python reads
        raise argparse.ArgumentTypeError(f"{key.strip()}: the value has an integer of more than "
                                         f"{sys.get_int_max_str_digits()} digits") from None
    return key.strip(), parsed


def parse_sizes(text: str, option: str) -> list[int]:
    """``"1e3,1e4"`` -> ``[1000, 10000]`` (positive integers; a user error names ``option``)."""
    sizes = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise VpinnError(f"{option}: {item!r} is not a number") from None
        if value < 1 or value != int(value):
            raise VpinnError(f"{option}: {item!r} is not a positive integer")
        sizes.append(int(value))
    return sizes


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The problem file, ``--device``, ``--out`` and repeatable ``--set KEY=VALUE``."""
    parser.add_argument("problem", nargs="?", help=f"problem file (default: {DEFAULT_PROBLEM})")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=expanded_path, help="output directory (default: under results/<name>; ~ is expanded)")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[], metavar="KEY=VALUE",
                        help="override a problem-file key, e.g. --set train.steps=500 (repeatable; validated like the file)")
