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


# ---------------------------------------------------------------- a task's presets in a short run


def test_a_task_preset_scales_to_a_shorter_run_and_config_show_says_so(capsys):
    from trainwell.cli.main import main

    cfg = load_config(overrides=["task.name=digits", "train.steps=20"])
    # digits presets warmup 20 and eval_every 100 for its 400 steps: the same shares of 20 steps
    assert (cfg.schedule.warmup_steps, cfg.train.eval_every) == (1, 5)
    assert "instead of the digits task's 20, which it sets for its 400-step run" in cfg.fitted["schedule.warmup_steps"]
    assert main(["config", "show", "--set", "task.name=digits", "--set", "train.steps=20"]) == 0
    out = capsys.readouterr().out
    assert "# fitted to train.steps = 20: 1 instead of the digits task's 20" in out
    assert "warmup_steps = 1\n" in out
    # the task's own run length keeps its presets exactly
    full = load_config(overrides=["task.name=digits"])
    assert (full.schedule.warmup_steps, full.train.eval_every) == (20, 100)
    assert "schedule.warmup_steps" not in full.fitted and "train.eval_every" not in full.fitted


def test_a_value_the_user_sets_over_a_preset_is_kept_and_named(tmp_path):
    with pytest.raises(ConfigError, match=r"schedule.warmup_steps \(30\) must be < train.steps \(20\)"):
        load_config(overrides=["task.name=digits", "train.steps=20", "schedule.warmup_steps=30"])
    path = tmp_path / "run.toml"
    path.write_text('[task]\nname = "digits"\n[train]\nsteps = 20\n[schedule]\nwarmup_steps = 20\n')
    with pytest.raises(ConfigError, match=r"schedule.warmup_steps \(20\) must be < train.steps \(20\)"):
        load_config(path)  # set in the file, even to the preset's own value
    kept = load_config(overrides=["task.name=digits", "train.steps=20", "schedule.warmup_steps=4"])
    assert kept.schedule.warmup_steps == 4 and "schedule.warmup_steps" not in kept.fitted


@pytest.mark.parametrize("steps", [20, 10, 1])
def test_every_built_in_task_takes_a_short_run_from_the_cli_config_path(steps):
    from trainwell.cli.main import build_parser
    from trainwell.tasks import TASKS

    for name in TASKS.names():
        args = build_parser().parse_args(["train", "--set", f"task.name={name}", "--set", f"train.steps={steps}"])
        cfg = load_config(args.config, args.overrides)
        assert cfg.train.steps == steps
        assert cfg.schedule.warmup_steps < steps, name
        assert 1 <= cfg.train.eval_every <= steps and 1 <= cfg.instruments.every <= steps, name
        assert 1 <= cfg.checkpoint.every_steps <= steps, name
        assert {"schedule.warmup_steps", "train.eval_every"} <= set(cfg.fitted), name


def test_a_short_cli_run_of_a_task_trains_with_its_presets_fitted(tmp_path, capsys):
    from trainwell.cli.main import main

    code = main(["train", "--set", "train.steps=20", "--set", "task.name=digits", "--set", "train.threads=1",
                 "--run-dir", str(tmp_path / "r"), "--progress", "off"])
    assert code == 0, capsys.readouterr().err
    saved = load_config(tmp_path / "r" / "config.toml")
    assert (saved.train.steps, saved.schedule.warmup_steps, saved.train.eval_every) == (20, 1, 5)
    assert "step 20: eval/accuracy" in capsys.readouterr().out
