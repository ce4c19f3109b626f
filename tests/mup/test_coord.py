"""The coordinate check: SP's hidden layer and output grow with the width, muP's do not;
the CLI passes muP, fails loudly on a model that is not in muP, and lists bad input."""

from __future__ import annotations

import json

import pytest

from trainwell.cli.main import main
from trainwell.config import resolve
from trainwell.mup.coord import coord_check

MLP = {"task": {"name": "digits"}, "optim": {"lr": 0.01}, "train": {"batch_size": 64},
       "model": {"depth": 2, "residual": False, "norm": "none", "activation": "relu"}}
"""The reference's coordinate-check model: 64 -> w -> w -> 10, ReLU, Adam lr 0.01."""
FLAGS = ["--set", "task.name=digits", "--set", "model.depth=2", "--set", "model.residual=false",
         "--set", "model.norm=none", "--set", "model.activation=relu", "--set", "optim.lr=0.01"]


@pytest.fixture(scope="module")
def data():
    return coord_check(resolve(MLP), [32, 128, 512], steps=3, seeds=1)


def test_sp_grows_and_mup_keeps_its_size(data) -> None:
    sp_hidden, mup_hidden = data.growth("sp", "body.4"), data.growth("mup", "body.4")
    sp_out, mup_out = data.growth("sp", "head"), data.growth("mup", "head")
    assert max(sp_hidden[1:]) > 4 and max(sp_out[1:]) > 10  # 16x width: hidden ~ sqrt(16)..16, out more
    assert all(0.5 <= g <= 2 for g in mup_hidden)
    assert max(mup_out) <= 2 and mup_out[-1] > mup_out[0]  # starts at 1/sqrt(m), catches up
    assert data.problems("mup") == []
    assert any(p.startswith("body.4 grows") for p in data.problems("sp"))
    assert any(p.startswith("head grows") for p in data.problems("sp"))


def test_same_numbers_at_the_base_width(data) -> None:
    """muP at the base width is SP: the first column agrees exactly."""
    for module in data.l1["sp"]:
        assert [row[0] for row in data.l1["sp"][module]] == [row[0] for row in data.l1["mup"][module]]


def test_cli_passes_mup_and_writes_its_report(tmp_path, capsys) -> None:
    rc = main(["mup", "check", *FLAGS, "--widths", "32", "256", "--steps", "3", "--seeds", "1",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "muP: passed" in out and "SP: body.4 grows" in out
    saved = json.loads((tmp_path / "coord_check.json").read_text())
    assert saved["problems"]["mup"] == [] and saved["widths"] == [32, 256]
    assert "<svg" in (tmp_path / "coord_check.html").read_text()


def test_cli_fails_loudly_naming_the_module_that_grows(tmp_path, capsys) -> None:
    """A task whose model ignores model.parametrization (a user model not put in muP) is SP
    in both columns: the check names what grows and exits 1."""
    rc = main(["mup", "check", *FLAGS, "--set", "task.name=mup_user_task:make_sp_task",
               "--widths", "32", "256", "--steps", "3", "--seeds", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "muP: FAILED: head grows" in out


def test_cli_lists_every_bad_input(capsys) -> None:
    rc = main(["mup", "check", *FLAGS, "--widths", "64", "32", "--steps", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--widths must be increasing" in err and "--steps and --seeds must be >= 1" in err
    assert "Traceback" not in err
