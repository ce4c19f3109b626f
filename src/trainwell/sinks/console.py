"""ConsoleProgress: the live progress bar (rich), and plain lines when it is off.

``update`` only records numbers; rich's refresh thread redraws at most
``REFRESH_PER_SECOND`` times a second, so calling it every step costs microseconds and
never floods a terminal or a log file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

REFRESH_PER_SECOND = 10
"""Redraws per second: smooth to the eye, negligible cost (rich's default)."""

_QUIET: ContextVar[bool] = ContextVar("trainwell_console_quiet", default=False)
_log = logging.getLogger("trainwell")


@contextmanager
def quiet() -> Iterator[None]:
    """Progress made within it prints nothing, neither the bar nor the start, evaluation and
    end lines (``trainwell.fit(progress=False)``); its lines go to the 'trainwell' logger
    instead, warnings at WARNING (Python's logging shows those on stderr when nothing else is
    configured), the rest at INFO. ``log.progress = "off"`` keeps the plain lines: a log file
    of a CLI run wants them."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def progress_enabled(setting: str, stream: TextIO | None = None) -> bool:
    """``log.progress``: 'on', 'off', or 'auto' (only when ``stream``, default stdout, is a
    terminal: a bar redrawn into a log file is noise)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    stream = sys.stdout if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class ConsoleProgress:
    """``step/total | bar | loss | lr | rate | elapsed | ETA`` for ``total_steps`` updates.

    ``unit`` names what ``rate`` counts ('samples' or 'tokens', the task's unit). With
    ``enabled=False``, ``update`` prints nothing at all and ``log`` prints plain lines.
    """

    def __init__(
        self,
        total_steps: int,
        enabled: bool,
        unit: str = "samples",
        *,
        console: Console | None = None,
    ) -> None:
        self.total_steps = total_steps
        self.enabled = enabled
        self.unit = unit
        self._progress: Progress | None = None
        self.quiet = _QUIET.get()
        if not enabled or self.quiet:
            return
        self._progress = Progress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.4g}"),
            TextColumn("lr {task.fields[lr]:.3g}"),
            TextColumn("{task.fields[rate]:,.0f} " + unit + "/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._task = self._progress.add_task(
            "train", total=total_steps, loss=float("nan"), lr=0.0, rate=0.0
        )
        self._progress.start()

    def update(self, step: int, loss: float, lr: float, rate: float) -> None:
        """``step`` applied updates so far; ``rate`` in ``unit`` per second."""
        if self._progress is None:
            return
        self._progress.update(self._task, completed=step, loss=loss, lr=lr, rate=rate)

    def log(self, message: str) -> None:
        """A line above the bar (evaluations, guard interventions), or a plain print."""
        if self.quiet:
            _log.log(logging.WARNING if message.startswith("warning") else logging.INFO, message)
        elif self._progress is None:
            print(message, flush=True)
        else:
            self._progress.console.print(message, highlight=False, markup=False)

    def close(self) -> None:
        """Draw the final state and stop the refresh thread; safe to call twice."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
