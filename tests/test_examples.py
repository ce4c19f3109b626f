"""The user-task example in examples/ (shown in docs/training.md) trains and fails clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trainwell.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_user_task_example_trains(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("my_tasks", None)
    code = main(["train", "--set", "task.name=my_tasks:make_task", "--set", "train.steps=600",
                 "--set", "train.batch_size=64", "--run-dir", "r", "--progress", "off"])
    assert code == 0
    import json

    final = json.loads((tmp_path / "r" / "summary.json").read_text())["final"]
    assert final["eval/accuracy"] > 0.95


def test_user_task_typo_lists_the_callables(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("my_tasks", None)
    assert main(["train", "--set", "task.name=my_tasks:make_tsk", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "make_tsk" in err and "make_task" in err


@pytest.mark.parametrize("name", ["my_tasks"])
def test_example_module_is_importable(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop(name, None)
    __import__(name)
