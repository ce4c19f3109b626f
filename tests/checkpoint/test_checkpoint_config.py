"""The [checkpoint] section: strict, documented, validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainwell.checkpoint import CheckpointConfig


def test_defaults_and_docs():
    cfg = CheckpointConfig()
    assert cfg.keep_last >= 1 and cfg.on_error in ("continue", "stop")
    for name, info in CheckpointConfig.model_fields.items():
        assert info.description, f"{name} has no docstring"


@pytest.mark.parametrize(
    "bad",
    [{"keep_last": 0}, {"every_steps": -1}, {"every_minutes": -0.5}, {"on_error": "ignore"},
     {"keep_healty": 2}],
)
def test_invalid_values_fail(bad):
    with pytest.raises(ValidationError):
        CheckpointConfig(**bad)


def test_frozen():
    with pytest.raises(ValidationError):
        CheckpointConfig().keep_last = 5


@pytest.mark.parametrize("final", [True, False])
def test_final_save_follows_the_setting(tmp_path, final):
    """The end-of-run save happens by default and not with checkpoint.final = false (the
    run's metrics are written either way)."""
    from trainwell.config import load_config
    from trainwell.train.loop import run

    cfg = load_config(None, ["task.name=digits", "train.steps=3", "schedule.warmup_steps=1", "train.eval_every=0", "log.progress=off",
                             "log.tensorboard=false", "checkpoint.every_steps=0", "checkpoint.every_minutes=0",
                             f"checkpoint.final={str(final).lower()}"])
    run(cfg, run_dir=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert bool(list((tmp_path / "run").rglob("checkpoints/*"))) is final
