"""SIGTERM and SIGINT (preemption, Ctrl-C): finish the current step, save, exit cleanly.

The handler only sets a flag; the loop checks it between steps, saves a checkpoint and
raises Interrupted, which the CLI turns into exit code 128 + signal number (143 for
SIGTERM, 130 for SIGINT: the shell's convention, so schedulers and wrappers see why).
A second Ctrl-C while saving interrupts at once. The handlers stay in place through the
final evaluation and checkpoint (train/loop.py): a signal after the last step lets them
finish, and the run ends as usual.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from trainwell.errors import TrainwellError


class Interrupted(TrainwellError):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """Installs handlers for SIGTERM and SIGINT while the loop runs (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user means it
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None
