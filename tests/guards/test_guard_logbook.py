from __future__ import annotations

import json
import math
import os

import pytest

from trainwell.errors import TrainwellError
from trainwell.guards import Logbook, read_logbook, render_markdown


def skip(step: int, iteration: int, loss: float = 9.0) -> dict:
    return {
        "kind": "skip",
        "step": step,
        "iteration": iteration,
        "loss": loss,
        "grad_norm": 3.0,
        "z_loss": 12.5,
        "guard": "spike",
        "reason": "loss_spike",
        "message": f"loss spike at step {step} (iteration {iteration}): loss {loss} is 12.5 sigma above the window mean 2.1",
    }


def test_each_write_is_complete_on_disk_and_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    book = Logbook(tmp_path / "run")
    events = [
        skip(10, 11),
        {"kind": "quarantine", "step": 10, "sample_ids": [4, 9], "message": "2 samples"},
    ]
    for n, e in enumerate(events, 1):
        book.write(e)
        lines = (tmp_path / "run" / "logbook.jsonl").read_text().splitlines()
        assert len(lines) == n and len(synced) == n
        got = json.loads(lines[-1])
        assert {k: got[k] for k in e} == e and "time" in got
    assert [e["kind"] for e in read_logbook(tmp_path / "run")] == ["skip", "quarantine"]


def test_nonfinite_and_tensor_values_become_plain_json(tmp_path):
    import torch

    book = Logbook(tmp_path)
    book.write(
        {
            "kind": "skip",
            "step": 1,
            "loss": math.nan,
            "grad_norm": math.inf,
            "sample_ids": torch.tensor([3, 5]),
            "evidence": {"z": -math.inf},
        }
    )
    line = (tmp_path / "logbook.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    e = read_logbook(tmp_path)[0]
    assert e["loss"] == "nan" and e["grad_norm"] == "inf" and e["sample_ids"] == [3, 5]
    assert e["evidence"]["z"] == "-inf"
    with pytest.raises(ValueError, match="kind"):
        book.write({"step": 2})


def test_a_torn_last_line_is_dropped_but_a_broken_middle_line_is_an_error(tmp_path):
    book = Logbook(tmp_path)
    book.write(skip(1, 1))
    with open(tmp_path / "logbook.jsonl", "a") as f:
        f.write('{"kind": "skip", "st')  # crash mid-write
    assert len(read_logbook(tmp_path)) == 1
    with open(tmp_path / "logbook.jsonl", "a") as f:
        f.write("\n" + json.dumps(skip(2, 2)) + "\n")
    with pytest.raises(TrainwellError, match="line 2"):
        read_logbook(tmp_path)
    assert read_logbook(tmp_path / "nothing-here") == []


def test_markdown_groups_incidents_and_tells_what_happened_next(tmp_path):
    events = [
        skip(100, 103),
        skip(101, 105),
        {
            "kind": "quarantine",
            "step": 101,
            "iteration": 105,
            "sample_ids": [17, 42],
            "message": "2 sample(s) quarantined at step 101: 17, 42.",
        },
        skip(102, 107),
        {
            "kind": "rollback",
            "step": 102,
            "iteration": 108,
            "reason": "skips",
            "message": "rollback at step 102 (iteration 108): 4 updates skipped within the last 100 steps.",
        },
        {
            "kind": "restart",
            "step": 50,
            "iteration": 108,
            "from_step": 102,
            "to_step": 50,
            "message": "Rolled back from step 102 to the healthy checkpoint at step 50: lr x1 -> x0.5, clip x1 -> x0.3.",
        },
        {"kind": "recovered", "step": 160, "iteration": 230, "message": "Recovered at step 160."},
        skip(900, 1100, loss=7.0),
        {
            "kind": "summary",
            "step": 1000,
            "iteration": 1200,
            "message": "Finished: 1000 steps, final loss 2.01.",
        },
    ]
    md = render_markdown(events)
    assert md.count("## Incident") == 2
    first = md.split("## Incident 2")[0]
    assert "## Incident 1: step 100 (iteration 103), loss spike" in first
    assert "Skipped 3 update(s) (steps 100-102)" in first
    assert "Quarantined sample(s) 17, 42" in first
    assert "Rolled back from step 102" in first and "x0.5" in first
    assert "Recovered at step 160." in first
    assert "Next intervention at step 900" in first
    second = md.split("## Incident 2")[1]
    assert "step 900" in second and "loss spike" in second
    assert "Finished: 1000 steps" in md
    assert (
        "3 skipped" not in md
        and "4 skipped update(s), 2 quarantined sample(s), 1 rollback(s)" in md
    )

    book = Logbook(tmp_path)
    for e in events:
        book.write(e)
    path = book.write_markdown()
    assert path.name == "logbook.md" and path.read_text() == render_markdown(book.events())


def test_markdown_of_a_quiet_run_and_of_a_stop():
    assert "No interventions" in render_markdown([])
    md = render_markdown(
        [
            {
                "kind": "stop",
                "step": 7,
                "iteration": 9,
                "reason": "nonfinite",
                "message": "non-finite loss at step 7. Try: a lower optim.lr",
            }
        ]
    )
    assert (
        "step 7" in md
        and "nonfinite" in md
        and "Stopped the run" in md
        and "The run stopped here" in md
    )
