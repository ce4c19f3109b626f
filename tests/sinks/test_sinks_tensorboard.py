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
