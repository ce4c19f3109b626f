"""Bad input gives one readable message naming the key or file, exit code 2, no traceback;
all config errors are reported at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainwell.cli.main import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_unknown_key_suggests_the_right_one(capsys):
    code, err = run_cli(capsys, "config", "show", "--set", "train.stepz=3")
    assert code == 2
    assert "train.stepz" in err and "did you mean 'train.steps'" in err


def test_wrong_type_names_the_key(capsys):
    code, err = run_cli(capsys, "config", "show", "--set", "train.steps=many")
    assert code == 2 and "train.steps" in err and "many" in err


def test_unknown_optimizer_lists_valid_names(capsys):
    code, err = run_cli(capsys, "config", "show", "--set", "optim.name=adamww")
    assert code == 2
    assert "did you mean 'adamw'" in err and "sgd" in err and "lion" in err


def test_unknown_choice_lists_valid_values(capsys):
    code, err = run_cli(capsys, "config", "show", "--set", "precision=fp8")
    assert code == 2 and "precision" in err and "bf16" in err


def test_all_problems_reported_at_once(capsys):
    code, err = run_cli(
        capsys, "config", "show", "--set", "train.stepz=3", "--set", "optim.lr=-1", "--set", "optim.name=foo"
    )
    assert code == 2
    assert "3 problems" in err
    assert "train.stepz" in err and "optim.lr" in err and "optim.name" in err


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "nope.toml"
    code, err = run_cli(capsys, "train", str(missing))
    assert code == 2 and str(missing) in err and "does not exist" in err


def test_invalid_toml_names_the_file(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    code, err = run_cli(capsys, "config", "show", str(bad))
    assert code == 2 and "bad.toml" in err and "TOML" in err


def test_unknown_task_name(capsys):
    code, err = run_cli(capsys, "config", "show", "--set", "task.name=digitz")
    assert code == 2 and "did you mean 'digits'" in err


def test_entry_point_that_does_not_import(capsys, tmp_path):
    code, err = run_cli(
        capsys, "train", "--run-dir", str(tmp_path / "r"), "--set", "task.name=no_such_module_xyz:make_task"
    )
    assert code == 2 and "no_such_module_xyz" in err and "task.name" in err


def test_set_without_equals(capsys):
    code, err = run_cli(capsys, "config", "show", "--set", "optim.lr")
    assert code == 2 and "KEY=VALUE" in err


@pytest.mark.parametrize("argv", [["train", "--set", "optim.name=nope"], ["train", "/no/such/file.toml"]])
def test_subprocess_exit_code_and_no_traceback(argv, tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "trainwell", *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("trainwell: error:")
    assert len(proc.stderr.strip().splitlines()) <= 3
