"""TensorBoardSink: scalars into TensorBoard event files (``tensorboard --logdir RUN``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

FLUSH_SECS = 10
"""Seconds between flushes of the event file by the writer's background thread: a crash
loses at most this much of the TensorBoard view (the JSONL file loses nothing). torch's
default is 120 s, long enough to miss the whole end of a short run."""


class TensorBoardSink:
    """One ``add_scalar`` per key; the ``group/`` prefix becomes TensorBoard's section."""

    def __init__(self, log_dir: str | Path) -> None:
        # Imported here: tensorboard takes seconds to import and is off for some runs.
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=FLUSH_SECS)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, float(value), global_step=int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()  # flushes; safe to call twice
