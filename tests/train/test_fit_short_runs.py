"""Step-count defaults fit short runs: a 50-step fit() runs with defaults scaled to it and
says so in `config show`; a value the user set is kept, and named if it cannot work."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell
from trainwell.cli.main import main
from trainwell.config import RunConfig, load_config
from trainwell.errors import ConfigError


def test_a_short_fit_runs_with_defaults_fitted_to_it(tmp_path):
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    result = trainwell.fit(nn.Linear(4, 2), DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True),
                           nn.functional.cross_entropy, config={"train": {"steps": 50}},
                           eval_data=TensorDataset(x, y), run_dir=tmp_path / "r", progress=False)
    assert result.steps == 50
    evals = [r["step"] for r in result.history if "eval/loss" in r]
    assert evals == [10, 20, 30, 40, 50]  # train.eval_every fitted to 10 (the default 200 would give only 50)
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("step-*")) == [
        "step-00000025", "step-00000050"]  # a mid-run rollback target
    saved = load_config(tmp_path / "r" / "config.toml", check_task=False)
    assert saved.schedule.warmup_steps == 5 and saved.guards.spike_window == 25


def test_fitted_values_and_reasons():
    cfg = RunConfig.model_validate({"train": {"steps": 50}})
    assert (cfg.schedule.warmup_steps, cfg.guards.spike_window, cfg.train.eval_every,
            cfg.checkpoint.every_steps, cfg.instruments.every) == (5, 25, 10, 25, 12)
    assert set(cfg.fitted) == {"schedule.warmup_steps", "guards.spike_window", "train.eval_every",
                               "checkpoint.every_steps", "instruments.every"}
    assert "instead of the default 100" in cfg.fitted["schedule.warmup_steps"]
    assert RunConfig().fitted == {}  # the default 1000-step run keeps every default
    assert RunConfig.model_validate({"train": {"steps": 3}}).guards.spike_window == 8  # its lower bound


def test_a_value_that_was_set_is_kept_and_named_when_it_cannot_work():
    kept = RunConfig.model_validate({"train": {"steps": 50}, "guards": {"spike_window": 40}})
    assert kept.guards.spike_window == 40 and "guards.spike_window" not in kept.fitted
    with pytest.raises(ConfigError, match=r"schedule.warmup_steps \(100\) must be < train.steps \(50\)"):
        load_config(overrides=["train.steps=50", "schedule.warmup_steps=100"], check_task=False,
                    base={"task": {"name": "fit"}})
    # a task's preset is a default: digits' warmup of 20 (for its 400 steps) scales to a 60-step run
    assert load_config(overrides=["task.name=digits", "train.steps=60"]).schedule.warmup_steps == 3


def test_config_show_says_what_was_fitted(capsys):
    assert main(["config", "show", "--set", "task.name=digits", "--set", "train.steps=50"]) == 0
    out = capsys.readouterr().out
    assert "# fitted to train.steps = 50: 25 instead of the default 128" in out
    assert "spike_window = 25" in out
    assert "fitted to" not in capsys.readouterr().out
    assert main(["config", "show", "--set", "task.name=digits", "--set", "train.steps=5000"]) == 0
    assert "fitted to" not in capsys.readouterr().out
