"""The terminal side of a training run: progress bars and Ctrl-C.

:class:`TerminalObserver` is the :class:`~vpinn.train.loop.Observer` that ``solve`` gives the
loop: one tqdm bar per phase (rate, ETA, the last logged loss and learning rate), and a SIGINT
handler installed for the duration of the run, under which the first Ctrl-C asks the loop to
stop after the current step (it then saves a checkpoint) and a second one stops at once.  A
second SIGINT within :data:`REPEAT_SECONDS` of the first counts as the same Ctrl-C: ``torchrun``
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


class TerminalObserver(Observer):
    """Progress bars (unless ``progress`` is False) and Ctrl-C handling; use as a context manager
    around the run so that the previous SIGINT handler comes back afterwards."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.bar: tqdm | None = None
        self._interrupted = False
        self._interrupted_at = 0.0
        self._previous = None

    def __enter__(self) -> "TerminalObserver":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request_stop)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _request_stop(self, signum, frame) -> None:
        now = time.monotonic()
        if self._interrupted and now - self._interrupted_at > REPEAT_SECONDS:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        if not self._interrupted:
            self._interrupted, self._interrupted_at = True, now

    def stop_requested(self) -> str | None:
        return "interrupted" if self._interrupted else None

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
