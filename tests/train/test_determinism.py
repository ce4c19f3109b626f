"""Same config + seed on CPU -> identical metrics.jsonl numbers (timings aside)."""

from __future__ import annotations

import json

from trainwell.config import load_config
from trainwell.train.loop import run


def numbers(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("sys/")} for r in rows]


def test_two_runs_log_identical_numbers(tmp_path):
    overrides = ["task.name=digits", "train.steps=30", "train.eval_every=10", "log.every=1", "log.tensorboard=false", "ema.decay=0.9"]
    a = run(load_config(overrides=overrides), run_dir=tmp_path / "a", progress=False)
    b = run(load_config(overrides=overrides), run_dir=tmp_path / "b", progress=False)
    na, nb = numbers(a.run_dir), numbers(b.run_dir)
    assert len(na) > 30 and na == nb
    assert any("eval/accuracy" in r for r in na) and any("eval_ema/accuracy" in r for r in na)


def test_a_different_seed_gives_different_numbers(tmp_path):
    base = ["task.name=digits", "train.steps=5", "schedule.warmup_steps=2", "log.every=1", "log.tensorboard=false"]
    a = run(load_config(overrides=base), run_dir=tmp_path / "a", progress=False)
    b = run(load_config(overrides=[*base, "seed=1"]), run_dir=tmp_path / "b", progress=False)
    assert numbers(a.run_dir) != numbers(b.run_dir)
