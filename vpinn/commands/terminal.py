"""The terminal side of a training run: progress bars and Ctrl-C.

:class:`TerminalObserver` is the :class:`~vpinn.train.loop.Observer` that ``solve`` gives the
loop: one tqdm bar per phase (rate, ETA, the last logged loss and learning rate), and a SIGINT
handler installed for the duration of the run, under which the first Ctrl-C asks the loop to
stop after the current step (it then saves a checkpoint) and a second one stops at once.
"""

from __future__ import annotations

import math
import signal
import threading

from tqdm import tqdm

from vpinn.train.loop import Observer, Phase


class TerminalObserver(Observer):
    """Progress bars (unless ``progress`` is False) and Ctrl-C handling; use as a context manager
    around the run so that the previous SIGINT handler comes back afterwards."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.bar: tqdm | None = None
        self._interrupted = False
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
        if self._interrupted:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self._interrupted = True

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
