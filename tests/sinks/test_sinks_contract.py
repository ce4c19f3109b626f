"""Every sink through the same checks: writes "group/name" floats at an int step,
takes non-finite values, and closes twice without complaint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from trainwell.sinks import JsonlSink, MemorySink, Sink, TensorBoardSink


def _make(kind: str, tmp_path: Path) -> Sink:
    if kind == "jsonl":
        return JsonlSink(tmp_path / "m.jsonl")
    if kind == "tensorboard":
        return TensorBoardSink(tmp_path / "tb")
    return MemorySink()


@pytest.mark.parametrize("kind", ["jsonl", "tensorboard", "memory"])
def test_sink_contract(kind: str, tmp_path: Path) -> None:
    sink = _make(kind, tmp_path)
    assert isinstance(sink, Sink)
    sink.write(0, {"train/loss": 2.5, "train/lr": 1e-3})
    sink.write(1, {"train/loss": math.nan, "train/grad_norm": math.inf, "eval/accuracy": 0.5})
    sink.write(2, {})
    sink.close()
    sink.close()


def test_memory_sink_series() -> None:
    sink = MemorySink()
    sink.write(0, {"train/loss": 3.0})
    sink.write(1, {"eval/loss": 2.0})
    sink.write(2, {"train/loss": 1.0})
    assert sink.series("train/loss") == [(0, 3.0), (2, 1.0)]
