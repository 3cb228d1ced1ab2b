"""CSV and JSON outputs, written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from vpinn.atomic import write_text


def _clean(value):
    """JSON cannot hold NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> None:
    """``data`` as indented JSON (NaN written as null)."""
    write_text(path, json.dumps(_clean(data), indent=2) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """``rows`` as CSV; ``columns`` default to the keys in order of first appearance.

    Missing and NaN values are written as empty cells; floats with full precision.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("")
            else:
                cells.append(repr(value) if isinstance(value, float) else value)
        writer.writerow(cells)
    write_text(path, buffer.getvalue())


def write_markdown(path: str | Path, rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> None:
    """A Markdown table of ``rows``; ``columns`` are (key, header, format spec); missing cells are blank."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if row.get(k) is None else format(row[k], f) for k, _, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    write_text(path, "\n".join(lines) + "\n")
