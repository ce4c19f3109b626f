"""Every built-in task, every model kind it supports, precision and EMA train through the
real loop for a few steps (smoke tests: finite losses, metrics, a run directory)."""

from __future__ import annotations

import json
import math

import pytest

from trainwell.config import load_config
from trainwell.errors import CheckpointError, TrainingHalted
from trainwell.train.loop import run

FAST = ["train.steps=6", "schedule.warmup_steps=2", "train.eval_every=3", "log.every=1", "log.tensorboard=false",
        "log.sample_chars=0", "train.eval_batches=2"]

CASES = [
    ("digits", ["model.kind=mlp"]),
    ("digits", ["model.kind=mlp", "model.norm=batch", "model.activation=tanh", "model.residual=false"]),
    ("digits", ["model.kind=cnn"]),
    ("digits", ["model.kind=resnet", "model.norm=batch"]),
    ("digits", ["task.whiten=true", "model.init=kaiming", "model.relu_bias=0.01", "model.activation=relu"]),
    ("digits-vae", []),
    ("digits-vae", ["model.vq=true"]),
    ("quadratic", []),
    ("bytes-lm", ["model.width=32", "model.depth=1", "model.heads=2", "task.seq_len=32", "train.batch_size=4"]),
    ("bytes-lm", ["model.width=32", "model.depth=1", "model.heads=2", "task.seq_len=32", "train.batch_size=4",
                  "model.pos=learned", "model.norm=rms", "model.qk_norm=false", "model.tie_embeddings=false",
                  "model.bias=true", "model.dropout=0.1", "task.z_loss=1e-4", "train.accumulate=2"]),
]


@pytest.mark.parametrize(("task", "extra"), CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)])
def test_task_and_model_options_train(task, extra, tmp_path):
    r = run(load_config(overrides=[f"task.name={task}", *FAST, *extra]), run_dir=tmp_path / "r", progress=False)
    rows = [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    summary = json.loads((r.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["metric"] in r.metrics
    for name in ("config.toml", "env.json"):
        assert (r.run_dir / name).exists()
    if "task.z_loss=1e-4" in extra:
        assert "train/loss/z" in rows[0]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_on_cpu(precision, tmp_path):
    r = run(load_config(overrides=["task.name=digits", f"precision={precision}", *FAST, "ema.decay=0.9"]),
            run_dir=tmp_path / "r", progress=False)
    assert math.isfinite(r.metrics["eval/loss"]) and "eval_ema/accuracy" in r.metrics
    if precision == "fp16":
        rows = [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
        assert any("train/loss_scale" in row for row in rows)


def test_a_failed_save_continues_or_stops_as_configured(tmp_path, monkeypatch):
    from trainwell.checkpoint import CheckpointStore

    def full_disk(self, step, parts, meta=None):
        raise CheckpointError(f"step {step}: No space left on device; earlier checkpoints are intact")

    monkeypatch.setattr(CheckpointStore, "save", full_disk)
    r = run(load_config(overrides=["task.name=digits", *FAST, "checkpoint.every_steps=2"]), run_dir=tmp_path / "a", progress=False)
    assert r.steps == 6  # trained on
    events = [json.loads(x) for x in (r.run_dir / "logbook.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "checkpoint_failed" and "No space" in e["message"] for e in events)
    with pytest.raises(CheckpointError):
        run(load_config(overrides=["task.name=digits", *FAST, "checkpoint.every_steps=2", "checkpoint.on_error=stop"]),
            run_dir=tmp_path / "b", progress=False)


def test_nonfinite_stop_policy_halts_with_a_diagnosis(tmp_path):
    with pytest.raises(TrainingHalted) as e:
        run(load_config(overrides=["task.name=digits", *FAST, "guards.nonfinite=stop", "faults.nan_loss_at=[3]"]),
            run_dir=tmp_path / "r", progress=False)
    assert "step" in str(e.value)


def test_run_with_progress_false_prints_nothing(tmp_path, capsys):
    """loop.run(progress=False) is as silent as fit(progress=False): no bar, no start, evaluation
    or end line; and a resume that finds no checkpoint drops the rows logged before it."""
    from trainwell.config import load_config
    from trainwell.train.loop import run

    cfg = load_config(overrides=["task.name=digits", "train.steps=6", "train.eval_every=3", "log.tensorboard=false",
                                 "checkpoint.every_steps=0", "checkpoint.final=false", "schedule.warmup_steps=2"])
    run(cfg, run_dir=tmp_path / "r", progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    run(cfg, run_dir=tmp_path / "r", progress=False, resume=True)  # no checkpoint: from step 0 again
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == len(rows)
