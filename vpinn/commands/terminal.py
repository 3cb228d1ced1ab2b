"""The terminal side of a training run: progress bars, Ctrl-C and SIGTERM.

:class:`TerminalObserver` is the :class:`~vpinn.train.loop.Observer` that ``solve`` gives the
loop: one tqdm bar per phase (rate, ETA, the last logged loss and learning rate), and SIGINT and
SIGTERM handlers installed for the duration of the run, under which the first signal asks the
loop to stop after the current step (it then saves a checkpoint; ``solve`` exits with status
128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM) and a second one stops at once.  A
second signal within :data:`REPEAT_SECONDS` of the first counts as the same one: ``torchrun``
forwards the terminal's Ctrl-C to its workers, which have already received it themselves.
"""

from __future__ import annotations

import math
import signal
import threading
import time

from tqdm import tqdm

from vpinn.train.loop import Observer, Phase

#: seconds within which a repeated SIGINT is the same Ctrl-C
REPEAT_SECONDS = 1.0

#: the signals that stop a run after its current step
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A second stop signal: training ends at once, without a checkpoint of the current step."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class TerminalObserver(Observer):
    """Progress bars (unless ``progress`` is False) and stop signals (Ctrl-C's SIGINT and
    SIGTERM, which schedulers send): the first asks the loop to stop after the current step,
    which then saves a checkpoint and the history, and is remembered as :attr:`signal`; a second
    raises :class:`Stopped` at once.  Use as a context manager around the run, so that the
    previous handlers come back afterwards."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.bar: tqdm | None = None
        self.signal: int | None = None
        self._previous: dict[int, object] = {}
        self._signalled_at = 0.0

    def __enter__(self) -> "TerminalObserver":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._request_stop) for number in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _request_stop(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signal is not None:
            if now - self._signalled_at > REPEAT_SECONDS:  # a second signal: stop at once
                raise Stopped(signum)
            return
        self.signal, self._signalled_at = signum, now

    def stop_requested(self) -> str | None:
        return "interrupted" if self.signal is not None else None

    def phase_started(self, phase: Phase, done: int) -> None:
        self.bar = tqdm(total=phase.steps, initial=done, desc=phase.name, unit="step", disable=not self.progress,
                        dynamic_ncols=True, mininterval=0.5)

    def stepped(self, row: dict | None) -> None:
        self.bar.update(1)
        if row is not None:
            lr = row["lr"]
            self.bar.set_postfix(loss=f"{row['loss']:.8g}", **({"lr": f"{lr:.2e}"} if math.isfinite(lr) else {}),
                                 refresh=False)

    def noted(self, text: str) -> None:
        if self.progress:
            tqdm.write(text)

    def phase_ended(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
