"""TensorBoardSink: scalars into TensorBoard event files (``tensorboard --logdir RUN``).

The sink writes the event file itself, in the calling thread: one ``Event`` (a ``Summary``
holding every scalar of the call, encoded by hand: ``SummaryLayout``) per ``write``, framed
as TensorBoard's record format
(length, masked CRC32C of the length, the event, masked CRC32C of the event). A ``write``
only keeps its values; they are encoded and written together at the next flush (every
``FLUSH_SECS``, and at close): the file holds nothing sooner either way, and encoding
40-odd events in one go costs a fraction of encoding each between two training steps
(there its numpy calls start cold: a 20-key write took ~180 us in a run of the digits
MLP against ~16 us in a loop of writes). Why not
torch's ``SummaryWriter``: it hands each event to a writer thread that checksums it with
tensorboard's pure-Python CRC32C, one Python loop step per byte (0.12 ms for a 400-byte
event of 15 scalars on a 2-core CPU), holding the GIL the training loop needs; the
CRC32C here is vectorised with numpy (about 10 us for the same event), and there is no
thread and no queue hand-off at all.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FLUSH_SECS = 10
"""Seconds between flushes of the event file (at the first write after them, and at
close): a crash loses at most this much of the TensorBoard view (the JSONL file loses
nothing). torch's default is 120 s, long enough to miss the whole end of a short run."""

MAX_PENDING = 4096
"""Writes kept before they are encoded even if no flush is due (bounds the memory)."""

MAX_LAYOUTS = 16
"""Key sequences whose layouts are kept (a run that keeps changing its keys starts over)."""

_files = itertools.count()
"""Distinguishes two event files opened by one process in the same second."""


class TensorBoardSink:
    """Scalars as TensorBoard sees them; the ``group/`` prefix becomes TensorBoard's section."""

    def __init__(self, log_dir: str | Path) -> None:
        # Imported here: tensorboard takes a while to import and is off for some runs.
        from tensorboard.compat.proto.event_pb2 import Event

        self._layouts: dict[tuple[str, ...], SummaryLayout] = {}
        """One layout per key sequence seen: a run alternates a few (the log steps', the
        measurement steps' with their ~300 instrument keys), and laying out 300 keys costs
        about a millisecond."""
        self._pending: list[tuple[float, int, tuple[str, ...], list[float]]] = []
        """(wall time, step, keys, values) of the writes since the last flush."""
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_files)}"
        self.path = self.log_dir / name
        self._file = self.path.open("wb")
        self._last_flush = time.monotonic()
        self._record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        self.flush()

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._file.closed or not metrics:
            return
        # float() here: a value that is no number is refused by the call that passed it
        self._pending.append((time.time(), int(step), tuple(metrics), [float(v) for v in metrics.values()]))
        if len(self._pending) >= MAX_PENDING or time.monotonic() - self._last_flush >= FLUSH_SECS:
            self.flush()

    def _encode_pending(self) -> None:
        pending, self._pending = self._pending, []
        for wall_time, step, keys, values in pending:
            layout = self._layouts.get(keys)
            if layout is None:  # a new set of keys: lay its Summary out once
                if len(self._layouts) >= MAX_LAYOUTS:
                    self._layouts.clear()
                layout = self._layouts[keys] = SummaryLayout(keys)
            self._record(event_bytes(wall_time, step, layout.fill(values)))

    def _record(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._file.write(b"".join((header, struct.pack("<I", masked_crc32c(header)), data,
                                   struct.pack("<I", masked_crc32c(data)))))

    def flush(self) -> None:
        if not self._file.closed:
            self._encode_pending()
            self._file.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:  # flushes; safe to call twice
            self._encode_pending()
            self._file.close()


# ---------------------------------------------------------------- the event, encoded by hand


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


class SummaryLayout:
    """The serialised ``Summary`` of a fixed key sequence, with a slot for each value.

    A ``Summary`` of scalars is ``value`` (field 1) repeated, each ``Value`` holding ``tag``
    (field 1, a string) and ``simple_value`` (field 2, a float32). For the same keys only the
    float32 bytes change, so the bytes are laid out once and each write copies the values
    into their slots with one numpy assignment: a write of 300 instrument metrics costs tens
    of microseconds instead of 300 protobuf objects (about 1 us each) and their serialisation.
    The bytes equal protobuf's own ``SerializeToString`` (tests/sinks/test_sinks_tensorboard.py)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        parts, slots, pos = [], [], 0
        for key in keys:
            tag = key.encode("utf-8")
            value = b"\x0a" + _varint(len(tag)) + tag + b"\x15"  # tag, then the float's key
            head = b"\x0a" + _varint(len(value) + 4) + value  # Summary.value (field 1)
            parts.append(head + b"\0\0\0\0")
            slots.append(pos + len(head))
            pos += len(head) + 4
        self.template = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
        self.index = (np.asarray(slots, dtype=np.int64)[:, None] + np.arange(4)).reshape(-1)  # (4 n,)

    def fill(self, values: list[float]) -> bytes:
        with np.errstate(over="ignore"):  # beyond float32: inf, as protobuf stores it
            floats = np.asarray(values, dtype=np.float64).astype("<f4")
        self.template[self.index] = floats.view(np.uint8)
        return self.template.tobytes()


def event_bytes(wall_time: float, step: int, summary: bytes) -> bytes:
    """An ``Event`` (wall_time: field 1, double; step: field 2, int64, left out when 0 as
    protobuf does; summary: field 5) around serialised ``Summary`` bytes."""
    head = b"\x09" + struct.pack("<d", wall_time)
    if step:
        head += b"\x10" + _varint(step & 0xFFFFFFFFFFFFFFFF)
    return head + b"\x2a" + _varint(len(summary)) + summary


# ---------------------------------------------------------------- CRC32C (Castagnoli)

_POLY = 0x82F63B78  # reflected
_CHUNK = 512
"""Bytes a vectorised step covers; longer data is done chunk by chunk."""


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _byte_table()
_SHIFTED: np.ndarray | None = None
"""(_CHUNK * 256,) uint32, built on first use: entry ((_CHUNK - 1 - k) * 256 + b) is the CRC
state that byte b followed by k zero bytes leaves from a zero state."""


def _shifted() -> np.ndarray:
    global _SHIFTED
    if _SHIFTED is None:
        table = np.array(_TABLE, dtype=np.uint32)
        rows = np.empty((_CHUNK, 256), dtype=np.uint32)
        rows[0] = table
        for k in range(1, _CHUNK):  # one more zero byte: s -> T[s & 0xFF] ^ (s >> 8)
            rows[k] = table[rows[k - 1] & 0xFF] ^ (rows[k - 1] >> 8)
        _SHIFTED = np.ascontiguousarray(rows[::-1]).reshape(-1)
    return _SHIFTED


_ROW_START = np.arange(_CHUNK, dtype=np.int64) * 256
_CARRY: tuple[list[int], ...] | None = None


def _carry_tables() -> tuple[list[int], ...]:
    """Rows 0-3 of the shifted table as Python lists: what byte j of a carried state adds
    at the end of a whole chunk."""
    global _CARRY
    if _CARRY is None:
        shifted = _shifted()
        _CARRY = tuple(shifted[j * 256:(j + 1) * 256].tolist() for j in range(4))
    return _CARRY


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data``, equal to tensorboard's (and TensorFlow's) ``crc32c``.

    The CRC is linear over GF(2): the state after a chunk is the XOR of each byte's
    contribution (a table lookup by byte value and distance from the end), and a state
    carried into the next chunk is the same as XOR-ing it into that chunk's first 4 bytes.
    """
    state = 0xFFFFFFFF
    n = len(data)
    if n <= 16:  # short (a record header): a plain loop is quicker than numpy
        for b in data:
            state = _TABLE[(state ^ b) & 0xFF] ^ (state >> 8)
        return state ^ 0xFFFFFFFF
    shifted = _shifted()
    pos = 0
    whole = (n - 4) // _CHUNK  # whole chunks, leaving at least 4 bytes to the loop below
    if whole >= 2:
        # every whole chunk's contribution from a zero state in one vectorised gather, then
        # the state carried chunk to chunk on the host: 4 lookups a chunk (the state's bytes
        # as if XOR-ed into the next chunk's first 4 bytes, as in the loop below)
        block = np.frombuffer(data, dtype=np.uint8, count=whole * _CHUNK).reshape(whole, _CHUNK)
        partial = np.bitwise_xor.reduce(shifted[_ROW_START + block.astype(np.int64)], axis=1).tolist()
        t0, t1, t2, t3 = _carry_tables()
        for p in partial:
            state = p ^ t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24]
        pos = whole * _CHUNK
    while pos < n:
        size = min(_CHUNK, n - pos)
        if 0 < n - pos - size < 4:  # keep the last chunk at least 4 bytes long
            size -= 4
        chunk = np.frombuffer(data, dtype=np.uint8, count=size, offset=pos).astype(np.int64)
        chunk[:4] ^= np.frombuffer(struct.pack("<I", state), dtype=np.uint8)
        state = int(np.bitwise_xor.reduce(shifted[_ROW_START[_CHUNK - size:] + chunk]))
        pos += size
    return state ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC of TensorFlow's record format."""
    x = crc32c(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF
