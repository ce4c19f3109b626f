"""A synthetic run directory with everything the report can show: a NaN, a spike, a
rollback (steps logged twice), logbook events, inst/* keys (global, companion, per
layer, unknown), histograms, and the usual side files."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import tomli_w
import torch

from trainwell.instruments.base import Histogram
from trainwell.report import append_histograms
from trainwell.sinks import JsonlSink

NAN_STEP = 120
SPIKE_STEP = 330
SPIKE = 50.0
ROLLBACK_FROM = 250
ROLLBACK_TO = 200
STEPS = 400
LAYERS = ("net.0.weight", "net.2.weight")


def _train_row(step: int, lr_mult: float, rng: random.Random) -> dict[str, Any]:
    lr = 3e-3 * min(1.0, step / 20) * (0.55 + 0.45 * math.cos(math.pi * step / STEPS)) * lr_mult
    loss = 2.3 * math.exp(-step / 80) + 0.05 + 0.01 * rng.random()
    if step == NAN_STEP:
        loss = math.nan
    if step == SPIKE_STEP:
        loss = SPIKE
    grad = 1.5 * math.exp(-step / 150) + 0.1 * rng.random()
    row = {
        "train/loss": loss,
        "train/grad_norm": grad,
        "train/clip_norm": 1.0 * (0.3 if lr_mult < 1 else 1.0),
        "train/clipped": float(grad > 1.0),
        "train/lr": lr,
        "sys/step_time_s": 0.01 + 0.002 * rng.random(),
        "guard/skips": int(step >= NAN_STEP),
        "guard/rollbacks": int(lr_mult < 1),
    }
    if step % 10 == 0:
        row |= {
            "inst/alpha": 0.3 * math.sin(step / 30),
            "inst/distance": math.sqrt(step) * 0.1,
            "inst/update_size": lr * 3,
            "inst/grad_norm": grad,
            "inst/norm_test": 0.5 + step / STEPS,
            "inst/inner_test": 0.2,
            "inst/ortho_test": 0.4,
            "inst/mean_gsnr": 0.05,
            "inst/hess_max_ev": 10 + step / 40,
            "inst/hess_max_ev/iters": 12.0,
            "inst/hess_trace": 50 + step / 8,
            "inst/tic": 0.3,
            "inst/noise_scale": 30 + step / 4,
            "inst/noise_scale/trace_sigma": 2.0,
            "inst/my_gauge": 1.0 + rng.random(),
            "inst/unsupported/net.1": 1.0,
        }
        for i, layer in enumerate(LAYERS):
            row[f"inst/grad_norm/{layer}"] = grad / (i + 1)
            row[f"inst/param_norm/{layer}"] = 5.0 + i + step / 100
    return row


def make_run(run_dir: Path, *, instruments: bool = True) -> Path:
    rng = random.Random(0)
    run_dir.mkdir(parents=True, exist_ok=True)
    sink = JsonlSink(run_dir / "metrics.jsonl")
    # attempt 1: steps 1..ROLLBACK_FROM; then the rollback restores ROLLBACK_TO with lr x0.5
    for step, mult in [(s, 1.0) for s in range(1, ROLLBACK_FROM + 1)] + [(s, 0.5) for s in range(ROLLBACK_TO, STEPS + 1)]:
        row = _train_row(step, mult, rng)
        if not instruments:
            row = {k: v for k, v in row.items() if not k.startswith("inst/")}
        sink.write(step, row)
        if step % 50 == 0:
            sink.write(step, {"eval/loss": 0.2 + 1 / step, "eval/accuracy": 1 - 1 / math.sqrt(step),
                              "eval_ema/accuracy": 1 - 0.9 / math.sqrt(step), "eval_ema/loss": 0.2 + 0.9 / step})
    sink.close()
    events = [
        {"kind": "skip", "step": NAN_STEP, "iteration": NAN_STEP, "message": f"non-finite loss at step {NAN_STEP}"},
        {"kind": "quarantine", "step": NAN_STEP, "iteration": NAN_STEP, "sample_ids": [3, 7], "message": "2 sample(s) quarantined <b>bold</b>"},
        {"kind": "rollback", "step": ROLLBACK_FROM, "iteration": ROLLBACK_FROM, "message": "rollback: too many skips"},
        {"kind": "restart", "step": ROLLBACK_TO, "iteration": ROLLBACK_FROM, "from_step": ROLLBACK_FROM,
         "to_step": ROLLBACK_TO, "lr_before": 1.0, "lr_after": 0.5,
         "message": f"Rolled back from step {ROLLBACK_FROM} to the healthy checkpoint at step {ROLLBACK_TO}: lr x1 -> x0.5"},
        {"kind": "recovered", "step": 300, "iteration": 350, "message": "Recovered at step 300."},
        {"kind": "summary", "message": "end of run"},
    ]
    (run_dir / "logbook.jsonl").write_text("".join(json.dumps({"time": "2026-01-01T00:00:00+00:00", **e}) + "\n" for e in events))
    config = {"seed": 0, "precision": "auto", "task": {"name": "digits"},
              "model": {"kind": "mlp", "depth": 2, "width": 128},
              "train": {"steps": STEPS, "batch_size": 64, "accumulate": 1},
              "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.1, "betas": [0.9, 0.95]},
              "schedule": {"name": "warmup_cosine", "warmup_steps": 20}, "clip": {"max_norm": 1.0}, "ema": {"decay": 0.999}}
    (run_dir / "config.toml").write_text(tomli_w.dumps(config))
    (run_dir / "summary.json").write_text(json.dumps({
        "status": "completed", "steps": STEPS, "iterations": STEPS + 60, "wall_time_s": 75.5,
        "metric": "eval/accuracy", "higher_is_better": True,
        "final": {"eval/accuracy": 0.95, "eval/loss": 0.2025, "train/loss": 0.06},
        "autopilot": {"guard/skips": 1, "guard/rollbacks": 1, "guard/quarantined": 2},
    }))
    (run_dir / "env.json").write_text(json.dumps({"device": "cpu", "torch": "2.13.0+cpu", "python": "3.11.7", "trainwell": "0.1.0"}))
    if instruments:
        edges = torch.linspace(-2, 2, 21)
        for step in (0, 100, 200, 300, 400):
            counts = torch.tensor([2 ** min(i, 20 - i) for i in range(20)])
            append_histograms(run_dir, {
                "grad_hist1d": Histogram(step, counts + step, (edges,)),
                **{f"grad_hist1d/{layer}": Histogram(step, counts, (edges,)) for layer in LAYERS},
                "grad_hist2d": Histogram(step, torch.ones(4, 5, dtype=torch.long) * step,
                                         (torch.linspace(-1, 1, 5), torch.linspace(-2, 2, 6)), axes=("gradient", "parameter")),
            })
    return run_dir
