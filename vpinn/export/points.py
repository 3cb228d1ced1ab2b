"""Points to evaluate at, from a CSV file: one point ``x, y, z`` per line, an optional header.

A line may have three numbers separated by commas (spaces around them are ignored); a first
line that is not numbers is a header, and it must then name the columns ``x, y, z`` (any case).
Blank lines and lines starting with ``#`` are skipped.  A malformed file is one
:class:`~vpinn.errors.VpinnError` naming the file and line.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vpinn.errors import VpinnError


def read_points(path: str | Path) -> np.ndarray:
    """The points (n, 3) float64 of a CSV file (see the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise VpinnError(f"{path}: cannot read the points file ({err.strerror})") from None
    except UnicodeDecodeError:
        raise VpinnError(f"{path}: the points file is not UTF-8 text") from None
    rows, header_seen = [], False
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = [c.strip() for c in text.split(",")]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if rows or header_seen:
                raise VpinnError(f"{path}:{number}: not three numbers x, y, z: {text!r}") from None
            if [c.lower() for c in cells] != ["x", "y", "z"]:
                raise VpinnError(f"{path}:{number}: a header must name the columns x, y, z, not {text!r}") from None
            header_seen = True
            continue
        if len(values) != 3:
            raise VpinnError(f"{path}:{number}: {len(values)} values, a point has 3 (x, y, z): {text!r}")
        if not all(math.isfinite(v) for v in values):
            raise VpinnError(f"{path}:{number}: not finite: {text!r}")
        rows.append(values)
    if not rows:
        raise VpinnError(f"{path}: no points (one line x, y, z per point)")
    return np.array(rows, dtype=np.float64)
