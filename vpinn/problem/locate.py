"""Find the line of a dotted key in TOML text, for error messages.

:mod:`tomllib` reports positions only for syntax errors, so validation errors are located by a
small scan of the text: table headers ``[a.b]`` and array-of-tables headers ``[[bc]]`` set the
current path, and ``key = ...`` lines complete it.  Dotted keys (``lbfgs.dtype = ...``) are followed; inline tables are
not; the key is then reported without a line, which is still a complete message.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- \"]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-. ]+?|\"[^\"]*\")\s*=")


def _split(key: str) -> list[str]:
    """``"bc[1].value"`` -> ``["bc", "[1]", "value"]``; ``"cells[2]"`` keeps its index."""
    parts: list[str] = []
    for piece in key.split("."):
        name, _, index = piece.partition("[")
        parts.append(name)
        if index:
            parts.append("[" + index)
    return [p for p in parts if p]


def locate(text: str, key: str) -> int | None:
    """1-based line of ``key`` (e.g. ``"train.lbfgs.dtype"``, ``"bc[0].on"``), or None."""
    wanted = _split(key)
    # An index into a list value (cells[2]) lives on the list's line.
    if wanted and wanted[-1].startswith("[") and not _is_table_array(text, wanted[:-1]):
        wanted.pop()
    table: list[str] = []
    counters: dict[str, int] = {}
    best: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = [n.strip().strip('"') for n in header.group(2).split(".")]
            if header.group(1) == "[[":
                base = ".".join(names)
                counters[base] = counters.get(base, -1) + 1
                table = [*names, f"[{counters[base]}]"]
            else:
                table = names
            if table == wanted[: len(table)] and best is None and len(table) == len(wanted):
                best = number  # the key names a whole table
            continue
        assign = _ASSIGN.match(line)
        if assign and [*table, *(k.strip().strip('"') for k in assign.group(1).split("."))] == wanted:
            return number
    return best


def _is_table_array(text: str, parts: list[str]) -> bool:
    """True if ``parts`` names an array of tables (``[[parts]]`` headers exist)."""
    name = re.escape(".".join(parts))
    return bool(parts) and re.search(rf"^\s*\[\[\s*{name}\s*\]\]", text, re.M) is not None
