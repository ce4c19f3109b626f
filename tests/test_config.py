from __future__ import annotations

import tomllib

import pytest

from trainwell.config import RunConfig, describe, load_config, parse_overrides
from trainwell.errors import ConfigError


def test_overrides_parse_toml_values():
    d = parse_overrides(["optim.lr=3e-4", "train.steps=200", "task.name=digits", "model.qk_norm=false", "optim.betas=[0.9, 0.99]"])
    assert d == {
        "optim": {"lr": 3e-4, "betas": [0.9, 0.99]},
        "train": {"steps": 200},
        "task": {"name": "digits"},
        "model": {"qk_norm": False},
    }


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(overrides=["task.name=digits", "optim.lr=0.002", "ema.decay=0.99"])
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    again = load_config(path)
    assert again == cfg
    assert tomllib.loads(path.read_text())["optim"]["lr"] == 0.002


def test_task_defaults_sit_under_user_values():
    cfg = load_config(overrides=["task.name=digits"])
    assert cfg.model.kind == "mlp"  # the digits task's default model
    cfg2 = load_config(overrides=["task.name=digits", "model.kind=cnn"])
    assert cfg2.model.kind == "cnn"


def test_required_keys_exist():
    cfg = RunConfig()
    for key in (
        "task.name", "seed", "train.steps", "train.batch_size", "train.accumulate", "train.eval_every",
        "optim.name", "optim.lr", "optim.weight_decay", "schedule.name", "schedule.warmup_steps",
        "clip.max_norm", "precision", "ema.decay",
    ):
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)


def test_config_is_frozen():
    cfg = RunConfig()
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        cfg.train.steps = 5  # type: ignore[misc]


def test_describe_has_every_field_with_its_description():
    text = describe(load_config())
    assert "[optim]" in text and "lr = " in text
    assert "beta2=0.95" in text  # the reason for the default is printed
    parsed = tomllib.loads(text)  # comments aside, it is valid TOML
    assert parsed["train"]["steps"] == load_config().train.steps


def test_negative_lr_names_the_key():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["optim.lr=-3e-4"])
    assert "optim.lr" in str(e.value) and "-0.0003" in str(e.value)


def test_cross_field_checks_name_both_keys():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["train.steps=10", "schedule.warmup_steps=20", "train.accumulate=64", "train.batch_size=8"])
    text = str(e.value)
    assert "schedule.warmup_steps (20) must be < train.steps (10)" in text
    assert "train.accumulate (64) must be <= train.batch_size (8)" in text


def test_advice_for_valid_but_unlikely_settings(capsys):
    from trainwell.cli.main import main

    assert load_config(None, []).advice() == []  # the defaults draw no advice
    sf = load_config(None, ["optim.name=schedulefree_adamw"]).advice()
    assert len(sf) == 1 and "schedule.name = 'constant'" in sf[0] and "'warmup_cosine'" in sf[0]
    assert load_config(None, ["optim.name=schedulefree_adamw", "schedule.name=constant"]).advice() == []
    lion = load_config(None, ["optim.name=lion"]).advice()
    assert len(lion) == 1 and "3-10x smaller lr" in lion[0]
    assert load_config(None, ["optim.name=lion", "optim.lr=3e-4"]).advice() == []
    assert main(["config", "show", "--set", "optim.name=lion"]) == 0
    assert "# advice: optim.name = 'lion'" in capsys.readouterr().out
