"""A results directory belongs to one run: a lock against concurrent runs, and no mixed files.

``solve`` claims its output directory before it writes anything there (:class:`ResultsDirectory`,
a context manager held for the whole run):

* **A lock.** ``fcntl.flock`` on ``.vpinn.lock`` in the directory: a second run into the same
  directory refuses in one line while the first runs.  The kernel releases the lock when the
  process ends, however it ends, so a crashed run never leaves a stale lock; the small file
  (the last holder's process id) stays.
* **One run per directory.** A fresh run refuses a directory holding any file a run writes
  (:data:`STATE`, :data:`RESULTS`) unless it continues that run (``--resume``) or replaces it
  (``--overwrite``: those files, and only those, are deleted before training; other files in
  the directory are left alone).
* **No stale results.** Before training, the files a finished run writes at its end
  (:data:`RESULTS`: summary, plots, fields) are deleted, also on ``--resume``: an interrupted or
  diverged run never leaves an older summary, plot or VTU beside its own history and checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from vpinn.errors import VpinnError

LOCK = ".vpinn.lock"
#: the files that carry a run's state: kept by ``--resume``, rewritten during training
STATE = ("checkpoint.pt", "history.csv", "problem.toml")
#: the files a run writes when training has ended
RESULTS = ("summary.json", "loss.png", "error.png", "solution.png", "solution.vtu", "solution.xdmf",
           "profile.csv", "profile.png")


class ResultsDirectory:
    """The output directory ``path`` of one run, created and locked on entering; see the module
    docstring.  ``resume``: the run continues the one in the directory; ``overwrite``: it
    replaces it."""

    def __init__(self, path: Path, *, resume: bool = False, overwrite: bool = False):
        self.path, self.resume, self.overwrite = Path(path), resume, overwrite
        self._lock: int | None = None

    def __enter__(self) -> "ResultsDirectory":
        try:
            if self.path.exists() and not self.path.is_dir():
                raise VpinnError(f"{self.path}: not a directory (a file of that name is in the way of the results)")
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise VpinnError(f"{err.filename or self.path}: cannot create the results directory ({err.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._lock, 32, 0).decode(errors="replace").strip() or "unknown"
            self._release()
            raise VpinnError(f"{self.path}: another run (process {holder}) is writing to this directory; "
                             "wait for it to end or choose another --out") from None
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, f"{os.getpid()}\n".encode(), 0)
        earlier = [name for name in (*STATE, *RESULTS) if (self.path / name).exists()]
        if earlier and not (self.resume or self.overwrite):
            self._release()
            raise VpinnError(f"{self.path} holds another run's files ({', '.join(earlier)}); continue that run with "
                             "--resume, or replace it with --overwrite (deletes those files)")
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def clear(self) -> None:
        """Delete the earlier results (and, unless resuming, the earlier run's state): called once
        every check has passed, just before the run writes its first file."""
        for name in RESULTS if self.resume else (*STATE, *RESULTS):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
