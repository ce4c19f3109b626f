"""sys/model_tflops, sys/mfu and sys/peak_mem_gb in the logged train metrics."""

from __future__ import annotations

import json

import pytest

from trainwell.config import load_config
from trainwell.tasks import build_task
from trainwell.train.loop import run
from trainwell.train.throughput import flops_per_sample

BASE = ["task.name=digits", "train.steps=30", "train.eval_every=0", "log.tensorboard=false", "log.every=10"]


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mfu_is_model_flops_over_the_given_peak(tmp_path):
    cfg = load_config(overrides=[*BASE, "log.peak_tflops=0.5"])
    r = run(cfg, run_dir=tmp_path / "r", progress=False)
    flops = flops_per_sample(build_task(cfg).build_model(), "samples")
    logged = [x for x in rows(r.run_dir) if "sys/samples_per_s" in x]
    assert logged
    for x in logged:
        assert x["sys/model_tflops"] == pytest.approx(flops * x["sys/samples_per_s"] / 1e12, rel=1e-9)
        assert x["sys/mfu"] == pytest.approx(x["sys/model_tflops"] / 0.5, rel=1e-9)
        assert 0 < x["sys/mfu"] < 1
        assert x["sys/peak_mem_gb"] > 0.01  # the process's peak resident set, at least 10 MiB


def test_no_mfu_on_a_cpu_without_a_peak(tmp_path):
    r = run(load_config(overrides=BASE), run_dir=tmp_path / "r", progress=False)
    logged = [x for x in rows(r.run_dir) if "sys/samples_per_s" in x]
    assert all("sys/mfu" not in x and x["sys/model_tflops"] > 0 for x in logged)
