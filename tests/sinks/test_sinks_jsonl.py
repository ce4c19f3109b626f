from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from trainwell.sinks import JsonlSink, read_jsonl


def test_round_trip_with_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.write(3, {"train/loss": 1.25, "train/grad_norm": math.inf, "guard/skips": 2})
    sink.write(4, {"train/loss": math.nan, "train/delta": -math.inf})
    sink.close()

    lines = path.read_text().splitlines()
    # Strict JSON (no NaN tokens): every line parses with non-finite numbers rejected.
    strict = [
        json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        for line in lines
    ]
    assert strict[0] == {"step": 3, "train/loss": 1.25, "train/grad_norm": "inf", "guard/skips": 2}
    assert strict[1]["train/loss"] == "nan" and strict[1]["train/delta"] == "-inf"

    rows = read_jsonl(path)
    assert rows[0]["train/grad_norm"] == math.inf and rows[0]["guard/skips"] == 2
    assert math.isnan(rows[1]["train/loss"]) and rows[1]["train/delta"] == -math.inf
    assert [r["step"] for r in rows] == [3, 4]


def test_each_write_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.write(0, {"train/loss": 2.0})
    # Another reader sees the line while the sink is still open: a crash would lose nothing.
    assert read_jsonl(path) == [{"step": 0, "train/loss": 2.0}]
    sink.close()


def test_appends_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    first = JsonlSink(path)
    first.write(0, {"train/loss": 2.0})
    first.close()
    second = JsonlSink(path)
    second.write(1, {"train/loss": 1.0})
    second.close()
    assert [r["step"] for r in read_jsonl(path)] == [0, 1]


def test_numpy_and_tensor_scalars_become_numbers(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.write(np.int64(5), {"a/x": np.float32(0.5), "a/y": torch.tensor(float("nan"))})  # type: ignore[arg-type]
    sink.close()
    assert path.read_text() == '{"step": 5, "a/x": 0.5, "a/y": "nan"}\n'


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "train/loss": 1.0}\n{"step": 1, "train/lo')
    assert read_jsonl(path) == [{"step": 0, "train/loss": 1.0}]


def test_fast_and_careful_rows_write_the_same_text(tmp_path: Path) -> None:
    """A row of plain floats and ints goes through one json.dumps; a row with a numpy scalar
    or a non-finite value through the per-value path; a key naming NaN or Infinity takes
    the careful path too and is still written right. Every line is strict JSON."""
    sink = JsonlSink(tmp_path / "m.jsonl")
    sink.write(1, {"a": 0.1, "b": 3, "c": True})
    sink.write(2, {"a": np.float64(0.1), "b": 3, "c": True})
    sink.write(3, {"inst/NaN_frac": 0.25, "inst/Infinity_count": 2, "x": math.nan})
    sink.close()
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert lines[0].split(", ", 1)[1] == lines[1].split(", ", 1)[1] == '"a": 0.1, "b": 3, "c": true}'
    assert json.loads(lines[2], parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))) == {
        "step": 3, "inst/NaN_frac": 0.25, "inst/Infinity_count": 2, "x": "nan"}
    assert read_jsonl(tmp_path / "m.jsonl")[2]["inst/NaN_frac"] == 0.25
