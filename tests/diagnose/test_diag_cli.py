"""The two commands from the command line, and the report showing diagnose's findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainwell.cli.main import main


def test_diagnose_healthy_digits_then_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--set", "task.name=digits", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "overfitting one batch" in out
    assert json.loads((tmp_path / "findings.json").read_text()) == []
    assert (tmp_path / "metrics.jsonl").exists() and not list(tmp_path.rglob("checkpoints/*"))  # read, not resumed
    assert main(["report", str(tmp_path)]) == 0
    assert "Diagnosis found nothing wrong" in (tmp_path / "report.html").read_text()


def test_diagnose_lr_too_high_is_printed_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diagnose", "--set", "task.name=digits", "--set", "optim.lr=0.3", "--run-dir", str(tmp_path),
                 "--steps", "30"])
    assert code == 0  # findings are not errors
    out = capsys.readouterr().out
    assert "[high] Learning rate too high (0.3)" in out and "fix:" in out
    assert main(["report", str(tmp_path)]) == 0
    assert "Learning rate too high" in (tmp_path / "report.html").read_text()


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--set", "task.name=digits", "--steps", "3", "--run-dir", str(tmp_path)]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["lr-find", "--set", "task.name=digits", "--min-lr", "1", "--max-lr", "0.5",
                 "--run-dir", str(tmp_path)]) == 2
    assert "min-lr" in capsys.readouterr().err
    assert main(["diagnose", "--set", "optim.lrr=1"]) == 2


def test_lr_find_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lr-find", "--set", "task.name=digits", "--run-dir", str(tmp_path), "--steps", "60"]) == 0
    out = capsys.readouterr().out
    assert "suggested lr" in out and "configured lr 0.003" in out
    assert (tmp_path / "lr_find.svg").exists() and (tmp_path / "lr_find.json").exists()


def test_a_probe_that_fails_is_a_line_and_the_rest_still_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from trainwell.diagnose import run as diag_run

    def broken(*args: object) -> None:
        raise RuntimeError("a model this probe did not expect")

    monkeypatch.setattr(diag_run, "depth_profile", broken)
    assert main(["diagnose", "--set", "task.name=digits", "--run-dir", str(tmp_path), "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "could not check the depth profile at init: RuntimeError: a model this probe did not expect" in out
    assert "Traceback" not in out
    saved = json.loads((tmp_path / "diagnosis.json").read_text())
    assert saved["not_checked"] and saved["stats"]["profile"] is None
    assert saved["stats"]["run"] is not None and saved["stats"]["overfit"] is not None  # the others ran
