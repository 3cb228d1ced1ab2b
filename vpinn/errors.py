"""User-facing errors.

Anything a user can get wrong (a problem file, a command-line value) raises a subclass of
:class:`VpinnError`.  The command line prints such errors as a single line and exits with a
non-zero status, without a traceback; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class VpinnError(Exception):
    """An error caused by user input; its message is complete on one line."""


class VpinnWarning(UserWarning):
    """A doubtful but valid input (e.g. a nearly incompressible material); the command line
    prints it as one line ``warning: ...`` and carries on."""


class SpecError(VpinnError):
    """A value in a problem specification is wrong.

    Parameters
    ----------
    key:
        Dotted path of the offending key, e.g. ``"pde.source"`` or ``"bc[1].on"``.
    reason:
        What is wrong, phrased for the user.
    """

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason

    def under(self, prefix: str) -> "SpecError":
        """The same error with ``prefix`` prepended to its key path."""
        if not prefix:
            return self
        key = f"{prefix}.{self.key}" if self.key and not self.key.startswith("[") else prefix + self.key
        return SpecError(key, self.reason)


class ProblemFileError(VpinnError):
    """A :class:`SpecError` located in a problem file: ``file:line: key: reason``."""

    def __init__(self, path: str, reason: str, key: str = "", line: int | None = None):
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")
        self.path, self.key, self.line, self.reason = path, key, line, reason


class TrainingDiverged(VpinnError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
