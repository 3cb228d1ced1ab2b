"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash, Ctrl-C or a full disk in the middle of a write leaves the previous file intact, never
half of a new one (``os.replace`` is atomic on POSIX within one file system; the new file is
flushed to disk first, so that holds across a power loss too).  An operating-system error names
the file meant, not the temporary one.  The file gets the permissions a plain ``open`` would
give it (0666 less the umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # Created with mode 0666 so that the kernel applies the umask, as for a plain open.
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(err, OSError) and err.errno is not None:  # name the file meant, not the temporary one
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
