"""TensorBoardSink: scalars into TensorBoard event files (``tensorboard --logdir RUN``).

One ``Event`` holding a ``Summary`` of every scalar of the call per ``write``: the messages
are tensorboard's own protobufs (``event_pb2``, ``summary_pb2``), framed as its
``RecordWriter`` frames them (length, masked CRC32C of the length, the event, masked CRC32C
of the event) with Google's C CRC32C (``google-crc32c``).

A ``write`` only keeps its values; they are encoded and written together at the next flush
(every ``FLUSH_SECS``, and at close), in the calling thread. The file holds nothing sooner
either way, and a flush of a run's worth of events costs a few milliseconds every ten
seconds instead of a protobuf and a checksum between every two training steps.

Why not torch's ``SummaryWriter`` or tensorboard's ``EventFileWriter``: they hand each
event to a writer thread whose ``RecordWriter`` checksums it with tensorboard's
pure-Python CRC32C, one Python loop step per byte (about 70 us for 512 bytes on a 2-core
CPU, against 0.15 us for ``google_crc32c``), holding the GIL the training loop needs. So
the four lines of framing are written here, around the maintained CRC.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path

import google_crc32c

FLUSH_SECS = 10
"""Seconds between flushes of the event file (at the first write after them, and at
close): a crash loses at most this much of the TensorBoard view (the JSONL file loses
nothing). torch's default is 120 s, long enough to miss the whole end of a short run."""

MAX_PENDING = 4096
"""Writes kept before they are encoded even if no flush is due (bounds the memory)."""

_files = itertools.count()
"""Distinguishes two event files opened by one process in the same second."""


class TensorBoardSink:
    """Scalars as TensorBoard sees them; the ``group/`` prefix becomes TensorBoard's section."""

    def __init__(self, log_dir: str | Path) -> None:
        # Imported here: tensorboard takes a while to import and is off for some runs.
        from tensorboard.compat.proto.event_pb2 import Event

        self._event = Event
        self._pending: list[tuple[float, int, Mapping[str, float]]] = []
        """(wall time, step, metrics) of the writes since the last flush."""
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_files)}"
        self.path = self.log_dir / name
        self._file = self.path.open("wb")
        self._last_flush = time.monotonic()
        self._file.write(frame(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()))
        self.flush()

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._file.closed or not metrics:
            return
        # float() here: a value that is no number is refused by the call that passed it
        self._pending.append((time.time(), int(step), {k: float(v) for k, v in metrics.items()}))
        if len(self._pending) >= MAX_PENDING or time.monotonic() - self._last_flush >= FLUSH_SECS:
            self.flush()

    def _encode_pending(self) -> None:
        pending, self._pending = self._pending, []
        records = []
        for wall_time, step, metrics in pending:
            event = self._event(wall_time=wall_time, step=step)
            add = event.summary.value.add
            for tag, value in metrics.items():
                add(tag=tag, simple_value=value)  # float32: beyond its range protobuf stores inf
            records.append(frame(event.SerializeToString()))
        self._file.write(b"".join(records))

    def flush(self) -> None:
        if not self._file.closed:
            self._encode_pending()
            self._file.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:  # flushes; safe to call twice
            self._encode_pending()
            self._file.close()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C of TensorFlow's record format (tensorboard's ``masked_crc32c``)."""
    x = google_crc32c.value(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record as tensorboard's ``RecordWriter.write`` lays it out (little-endian):
    uint64 length, uint32 masked CRC of the length, the data, uint32 masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return b"".join((header, struct.pack("<I", masked_crc32c(header)), data,
                     struct.pack("<I", masked_crc32c(data))))
