from __future__ import annotations

import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainwell.sinks import TensorBoardSink


def test_event_file_reads_back(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path / "tb")
    for step in range(3):
        sink.write(step, {"train/loss": 3.0 - step, "train/lr": 1e-3 * (step + 1)})
    sink.write(5, {"eval/accuracy": 0.75, "train/grad_norm": math.inf})
    sink.close()

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {"train/loss", "train/lr", "eval/accuracy", "train/grad_norm"}
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert loss == [(0, 3.0), (1, 2.0), (2, 1.0)]
    lr = [e.value for e in acc.Scalars("train/lr")]
    assert [round(v, 9) for v in lr] == [0.001, 0.002, 0.003]
    assert [(e.step, e.value) for e in acc.Scalars("eval/accuracy")] == [(5, 0.75)]
    assert acc.Scalars("train/grad_norm")[0].value == math.inf


def test_records_are_framed_as_tensorboards_record_writer_frames_them() -> None:
    """Byte for byte what tensorboard's own ``RecordWriter`` (with its reference CRC32C)
    writes, for empty, short, header-sized and long records."""
    import io
    import random

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference
    from tensorboard.summary.writer.record_writer import RecordWriter

    from trainwell.sinks.tensorboard import frame, masked_crc32c

    rng = random.Random(0)
    for n in (0, 1, 7, 8, 9, 100, 511, 512, 4097):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert masked_crc32c(data) == reference(data), n
        theirs = io.BytesIO()
        RecordWriter(theirs).write(data)
        assert frame(data) == theirs.getvalue(), n


def test_many_writes_and_a_long_event_read_back(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path / "tb")
    wide = {f"group/metric_{i:03d}": float(i) for i in range(100)}  # one long event
    for step in range(1, 51):
        sink.write(step, {"train/loss": 1.0 / step})
    sink.write(60, wide)
    sink.write(61, {})  # nothing to write
    sink.close()
    sink.close()  # safe twice
    sink.write(62, {"train/loss": 0.0})  # after close: ignored
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 51))
    assert acc.Scalars("group/metric_099")[0].value == 99.0


def test_values_read_back_as_float32_with_their_tags(tmp_path: Path) -> None:
    """Odd key lengths (a 2-byte length prefix), non-ASCII keys, values beyond float32
    (inf), NaN, -0.0, numpy and 0-d tensor scalars, step 0 and a step beyond 32 bits."""
    import numpy as np
    import torch

    keys = ("a", "x" * 200, "inst/métrique", "big", "nan", "neg0", "np", "t")
    sink = TensorBoardSink(tmp_path / "tb")
    steps = (0, 7, 2**40 + 3)
    for step in steps:
        sink.write(step, dict(zip(keys, (1.5, 3e-3, -3.5, 1e39, math.nan, -0.0, np.float32(2.5),
                                         torch.tensor(0.25)), strict=True)))
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == set(keys)
    got = {k: [e.value for e in acc.Scalars(k)] for k in keys}
    assert [e.step for e in acc.Scalars("a")] == list(steps)
    assert got["a"] == [1.5] * 3 and got["np"] == [2.5] * 3 and got["t"] == [0.25] * 3
    assert got["x" * 200] == [float(np.float32(3e-3))] * 3 and got["inst/métrique"] == [-3.5] * 3
    assert got["big"] == [math.inf] * 3 and all(math.isnan(v) for v in got["nan"])
    assert all(v == 0.0 and math.copysign(1.0, v) < 0 for v in got["neg0"])


def test_wide_write_reads_back_with_the_same_keys_twice(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path / "tb")
    wide = {f"inst/m{i:03d}": float(i) / 7 for i in range(300)}
    sink.write(16, wide)
    sink.write(32, {k: v * 2 for k, v in wide.items()})  # the same layout, new values
    sink.write(33, {"train/loss": 0.5})  # another key set
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("inst/m299")] == [(16, round(299 / 7, 5)),
                                                                              (32, round(598 / 7, 5))]
    assert acc.Scalars("train/loss")[0].value == 0.5


def test_alternating_key_sets_read_back_each_with_its_own_values(tmp_path: Path) -> None:
    """A run alternates the log steps' keys with a measurement's: every write reads back
    with its own values, and the keys of one write do not leak into another's."""
    sink = TensorBoardSink(tmp_path / "tb")
    log = {"train/loss": 0.0, "train/lr": 0.0}
    wide = {**log, **{f"inst/m{i:03d}": 0.0 for i in range(50)}}
    for step in range(1, 13):
        keys = wide if step % 4 == 0 else log
        sink.write(step, {k: step + i / 8 for i, k in enumerate(keys)})
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/lr")] == [(s, s + 0.125) for s in range(1, 13)]
    assert [(e.step, e.value) for e in acc.Scalars("inst/m049")] == [(s, s + 51 / 8) for s in (4, 8, 12)]


def test_writes_reach_the_file_at_flush_and_bad_values_are_refused_at_write(tmp_path: Path, monkeypatch) -> None:
    """A write keeps its values and a flush encodes them (the file then holds every one,
    in order); MAX_PENDING writes are encoded without a flush; a value that is no number is
    refused by the write that passed it."""
    import pytest

    from trainwell.sinks import tensorboard

    sink = TensorBoardSink(tmp_path / "tb")
    size = sink.path.stat().st_size  # the file-version record
    for step in range(1, 4):
        sink.write(step, {"train/loss": 1.0 / step})
    assert sink.path.stat().st_size == size
    sink.flush()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    with pytest.raises((TypeError, ValueError)):
        sink.write(4, {"train/loss": "high"})  # type: ignore[dict-item]
    monkeypatch.setattr(tensorboard, "MAX_PENDING", 5)
    for step in range(5, 10):
        sink.write(step, {"train/loss": float(step)})
    sink._file.flush()  # the Python buffer only: the sink encoded the five without a flush of its own
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 5, 6, 7, 8, 9]
    sink.close()
    sink.write(10, {"train/loss": 1.0})  # after close: ignored, as before
