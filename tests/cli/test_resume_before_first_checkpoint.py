"""``trainwell resume`` on a run stopped before its first checkpoint starts it again from its
saved config (it exited 2, 'no valid checkpoint', where ``train --resume`` started it again);
a run whose checkpoints are all damaged is still refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainwell.cli.main import main

RUN = ["--set", "task.name=digits", "--set", "train.steps=6", "--set", "schedule.warmup_steps=1", "--set", "checkpoint.final=false",
       "--set", "checkpoint.every_steps=0", "--set", "checkpoint.every_minutes=0", "--set", "log.every=1",
       "--set", "log.tensorboard=false"]


def steps(run_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "train/loss" in r]


def test_resume_before_the_first_checkpoint_starts_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *RUN, "--run-dir", str(tmp_path)]) == 0  # as if killed before any checkpoint
    assert not list(tmp_path.glob("checkpoints/step-*"))
    assert main(["resume", str(tmp_path)]) == 0
    assert "no checkpoint yet" in capsys.readouterr().out
    assert steps(tmp_path) == [1, 2, 3, 4, 5, 6]  # logged once, not twice


def test_resume_with_only_damaged_checkpoints_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *RUN, "--run-dir", str(tmp_path)]) == 0
    (tmp_path / "checkpoints" / "step-00000003").mkdir(parents=True)  # a checkpoint cut before its manifest
    assert main(["resume", str(tmp_path)]) == 2
    assert "no valid checkpoint" in capsys.readouterr().err
