"""Resume refuses a config that changed since the checkpoint, by name, except for settings
that may change (logging, checkpointing, devices...) and settings added to trainwell since
the checkpoint was written, left at their defaults (a run from an older version resumes)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from trainwell.checkpoint import CheckpointConfig
from trainwell.config import load_config
from trainwell.errors import ConfigError
from trainwell.train.checkpointing import Checkpointer


def check(tmp_path: Path, saved: dict, *now: str) -> None:
    ckpt = Checkpointer(CheckpointConfig(), tmp_path, load_config(None, list(now)).to_dict())
    ckpt._check_config(saved, SimpleNamespace(path=tmp_path / "checkpoints" / "step-00000010"))


def saved_config(*overrides: str, drop: str = "") -> dict:
    """A checkpoint's config; ``drop``: a dotted key the writing version did not have yet."""
    config = load_config(None, list(overrides)).to_dict()
    if drop:
        section, key = drop.split(".")
        del config[section][key]
    return config


def test_a_changed_setting_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr \(0\.003 -> 0\.001\)"):
        check(tmp_path, saved_config("optim.lr=0.003"), "optim.lr=0.001")


def test_settings_that_may_change_pass(tmp_path: Path) -> None:
    check(tmp_path, saved_config("log.every=10", "checkpoint.keep_last=3"), "log.every=1", "checkpoint.keep_last=5")


def test_a_setting_added_since_resumes_at_its_default_only(tmp_path: Path) -> None:
    older = saved_config(drop="task.test_fraction")
    check(tmp_path, older)  # the default keeps the earlier behaviour: nothing changed
    with pytest.raises(ConfigError, match=r"task\.test_fraction \(None -> 0\.1\)"):
        check(tmp_path, older, "task.test_fraction=0.1")
