"""The test split of a benchmark's final runs: evaluated once per run, after the protocol
has chosen its setting on validation, and written beside the run (``test_metrics.json``) so
that a continued benchmark reads it instead of evaluating again.

The evaluation happens after the run, from its final checkpoint, never during it: no
evaluation row, no pruner, no study ranking can see the test split, so nothing is chosen
by it. The model is rebuilt from the run's config.toml and the checkpoint saved at
``train.steps``; an optimizer that keeps separate evaluation weights (schedule-free) is
rebuilt from its state and swapped to them, as the run's own evaluations do. To be sure the
rebuilt model is the one the run evaluated, the validation split is evaluated again and
must give the run's own final validation value; where it does not (say, a submission that
keeps its averaged weights outside its ``state_dict``), no test value is recorded and the
reason is. A metric that samples as it evaluates (the VAE's ELBO draws its latent) cannot
be reproduced exactly: it must then lie within the evaluation's own noise, measured over
``NOISE_DRAWS`` seeds, and the test split is evaluated with a fixed seed (the run's), so
the recorded test value does not depend on when it was evaluated.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

TEST_FILE = "test_metrics.json"
"""Written in the run directory: {"step", "metrics": {"test/<name>": value}, "missing"}."""

AGREE_REL = 1e-3
"""How closely the rebuilt model must reproduce the run's final validation value (relative)
when the metric is deterministic: the same weights on the same batches agree to rounding;
other weights would not."""
NOISE_DRAWS = 8
"""Seeds of the validation evaluation that measure a sampling metric's own noise."""
NOISE_Z = 4.0
"""A sampling metric agrees when the run's value is within this many standard deviations
of the evaluation noise from the rebuilt model's mean (a chance of about 1 in 10^4 of
refusing the right weights under a normal noise)."""


@dataclass
class _Rebuilt:
    """A finished run's task and its final model, ready to evaluate."""

    cfg: Any
    task: Any
    model: nn.Module
    step: int


def read_test(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's recorded test evaluation, or None when it has none."""
    path = Path(run_dir) / TEST_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def evaluate_test(run_dir: str | Path, metric: str) -> dict[str, Any]:
    """The test metrics of a finished run (``metric``: the run's ``eval/<name>``, checked
    against the rebuilt model), evaluated once and then read from ``TEST_FILE``."""
    run_dir = Path(run_dir)
    found = read_test(run_dir)
    if found is not None:
        return found
    out = _evaluate(run_dir, metric)
    tmp = run_dir / (TEST_FILE + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, allow_nan=False))
    tmp.replace(run_dir / TEST_FILE)
    return out


def _evaluate(run_dir: Path, metric: str) -> dict[str, Any]:
    from trainwell.errors import TrainwellError

    try:
        run = _rebuild(run_dir)
    except TrainwellError as e:
        return _missing(f"{type(e).__name__}: {e}")
    if isinstance(run, str):
        return _missing(run)
    data = run.task.test_data()
    if data is None:
        return _missing(f"task {run.cfg.task.name!r} has no test split")
    why = _disagrees(run, run_dir, metric)
    if why is not None:
        return _missing(why)
    torch.manual_seed(run.cfg.seed)  # a metric that samples gives the same test value every time
    values = {f"test/{k}": _finite(v) for k, v in _metrics(run, data).items()}
    name = "test/" + metric.split("/", 1)[-1]
    why = None if values.get(name) is not None else f"{name} is {'not finite' if name in values else 'not reported'}"
    return {"step": run.step, "metrics": values, "missing": why}


def _rebuild(run_dir: Path) -> _Rebuilt | str:
    """The run's task and final model, or why there is none (a string)."""
    from trainwell.checkpoint.config import CheckpointConfig
    from trainwell.checkpoint.store import CheckpointStore
    from trainwell.config import load_config
    from trainwell.optim.optimizers import build_optimizer
    from trainwell.tasks import build_task

    cfg = load_config(run_dir / "config.toml")
    store = CheckpointStore(run_dir / "checkpoints", CheckpointConfig())
    info, _ = store.latest_valid() if store.root.is_dir() else (None, [])
    if info is None or info.step < cfg.train.steps or "model" not in info.parts:
        return f"no final checkpoint (train.steps = {cfg.train.steps}) with the model's weights"
    parts = store.load(info, parts=[p for p in ("model", "optimizer") if p in info.parts])
    task = build_task(cfg)
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    optimizer = build_optimizer(cfg.optim, model, steps=cfg.train.steps)
    try:
        model.load_state_dict(parts["model"])
        if hasattr(optimizer, "eval") and hasattr(optimizer, "train") and "optimizer" in parts:
            optimizer.load_state_dict(parts["optimizer"])
            optimizer.eval()  # the evaluation weights, as before each of the run's evaluations
    except (RuntimeError, ValueError, KeyError) as e:
        return f"{info.path}: the checkpoint does not fit the model and optimizer config.toml builds ({e})"
    return _Rebuilt(cfg, task, model, info.step)


def _metrics(run: _Rebuilt, data: Any) -> dict[str, float]:
    """The task's metrics over ``data``, evaluated the way the run evaluates validation."""
    from trainwell.train.evaluate import evaluate
    from trainwell.train.flight import resolve_device
    from trainwell.train.precision import resolve_precision

    device = resolve_device(run.cfg.train.device)
    train = run.cfg.train
    return evaluate(run.task, run.model.to(device), data, batch_size=train.eval_batch_size or train.batch_size,
                    max_batches=train.eval_batches, device=device,
                    precision=resolve_precision(run.cfg.precision, device))


def _disagrees(run: _Rebuilt, run_dir: Path, metric: str) -> str | None:
    """Why the rebuilt model is not the one the run evaluated last (None: it is)."""
    from trainwell.sinks import METRICS_FILE, read_jsonl

    logged = [row[metric] for row in read_jsonl(run_dir / METRICS_FILE)
              if isinstance(row.get(metric), (int, float)) and int(row.get("step", -1)) == run.step]
    if not logged:
        return f"the run logged no {metric} at step {run.step} to check the rebuilt model against"
    again = _validation_draws(run, metric.split("/", 1)[-1])
    if not again:
        return f"the rebuilt model gives no {metric}"
    mean = statistics.fmean(again)
    if len(again) > 1:  # a sampling metric: within its own noise
        agrees = abs(logged[-1] - mean) <= NOISE_Z * statistics.stdev(again) * math.sqrt(1 + 1 / len(again))
    else:
        agrees = math.isclose(mean, logged[-1], rel_tol=AGREE_REL, abs_tol=1e-9)
    if not agrees:
        return (f"the final checkpoint does not reproduce the run's last {metric} ({logged[-1]:.6g}, rebuilt "
                f"{mean:.6g}): its optimizer may keep evaluation weights outside its state_dict")
    return None


def _validation_draws(run: _Rebuilt, name: str) -> list[float]:
    """The rebuilt model's validation metric: one value when two seeds agree (the metric is
    deterministic), else NOISE_DRAWS values, one per seed."""
    draws: list[float] = []
    for seed in range(NOISE_DRAWS):
        torch.manual_seed(seed)
        value = _metrics(run, run.task.eval_data()).get(name)
        if value is None:
            return []
        draws.append(value)
        if seed == 1 and draws[0] == draws[1]:
            return draws[:1]
    return draws


def _missing(why: str) -> dict[str, Any]:
    return {"step": None, "metrics": {}, "missing": why}


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None
