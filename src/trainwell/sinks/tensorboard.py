"""TensorBoardSink: scalars into TensorBoard event files (``tensorboard --logdir RUN``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

FLUSH_SECS = 10
"""Seconds between flushes of the event file by the writer's background thread: a crash
loses at most this much of the TensorBoard view (the JSONL file loses nothing). torch's
default is 120 s, long enough to miss the whole end of a short run."""


class TensorBoardSink:
    """Scalars as TensorBoard sees them; the ``group/`` prefix becomes TensorBoard's section.

    One event (a ``Summary`` holding every scalar of the call) per ``write`` rather than one
    ``add_scalar`` per key: each ``add_scalar`` is a hand-off to the writer's thread, and
    with 15-20 keys those hand-offs were the largest item of the loop's own cost (about
    0.1 ms a logged step on a 2-core CPU; benchmarks/RESULTS.md section 2)."""

    def __init__(self, log_dir: str | Path) -> None:
        # Imported here: tensorboard takes seconds to import and is off for some runs.
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=FLUSH_SECS)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=key, simple_value=float(value)) for key, value in metrics.items()]
        if values:
            self._writer._get_file_writer().add_summary(Summary(value=values), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()  # flushes; safe to call twice
