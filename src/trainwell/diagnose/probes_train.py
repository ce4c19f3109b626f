"""Probes that train: overfit one batch, the BatchNorm mode check, and a short run of the
configured training with the instruments on (its rows are read back from metrics.jsonl).
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.config import RunConfig, deep_merge
from trainwell.data.batches import DataWarning, batch_len
from trainwell.data.draw import batch_size_of
from trainwell.errors import DataError, TrainingHalted
from trainwell.tasks.base import Task

OVERFIT_LR = 1e-3
"""Adam's step size for the overfit probe, fixed rather than the configured one so that a
wrong learning rate (diagnosed by its own rule) does not also read as a broken model. 1e-3
is Adam's default (Kingma & Ba 2015); memorising a handful of samples needs no tuning."""

OVERFIT_LR_LATE = 1e-2
"""The step size for the probe's second half when the first half did not reach the target:
tiny models learn at 1e-3 but too slowly (a 146-parameter MLP on 8 separable samples stood at
0.12x after 200 steps, a false 'cannot overfit'); a broken model stays broken at 10x the LR."""

OVERFIT_TARGET = 0.1
"""The probe succeeds once the batch loss falls to this fraction of its initial value.
Karpathy ("A Recipe for Training Neural Networks", 2019): a model that cannot drive the loss
on a few examples towards zero has a bug; a tenth of the initial loss leaves no doubt that it
is learning the batch, and is reached in tens of steps by every built-in task."""


@dataclass(frozen=True)
class OverfitResult:
    samples: int
    steps: int
    """Adam steps taken (the probe stops as soon as it reaches the target)."""
    initial_loss: float
    final_loss: float
    best_loss: float
    has_gradient: bool
    """False when the loss does not depend on the parameters (no graph, or all-zero gradients)."""
    accuracy: float | None = None
    """The task's 'accuracy' metric on the batch after the probe, when it has one."""
    gradient_share: float = 1.0
    """Fraction of the trainable parameters (by count) that got a nonzero gradient at some step:
    below 1 when part of the model is cut off from the loss (a detached branch or output)."""

    @property
    def ratio(self) -> float:
        """best loss / initial loss (nan when the initial loss is not positive and finite)."""
        if not (math.isfinite(self.initial_loss) and self.initial_loss > 0):
            return math.nan
        return self.best_loss / self.initial_loss


def overfit_one_batch(task: Task, model: nn.Module, batch: Any, max_steps: int = 200) -> OverfitResult:
    """Train ``model`` (a fresh one) on one fixed batch with Adam (OVERFIT_LR, then
    OVERFIT_LR_LATE for the second half) until the loss falls to OVERFIT_TARGET of its start
    or ``max_steps`` pass."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=OVERFIT_LR)
    first = best = last = math.nan
    steps = 0
    samples = batch_len(batch)
    reached: set[int] = set()
    for steps in range(1, max_steps + 1):
        out = task.loss(model, batch)
        loss = out.sum.float() / float(out.count)
        last = float(loss.detach())
        if steps == 1:
            first = best = last
        best = min(best, last) if math.isfinite(last) else best
        if not loss.requires_grad:
            return OverfitResult(samples, 0, first, last, best, has_gradient=False)
        if best <= OVERFIT_TARGET * first or not math.isfinite(last):
            break
        if steps == max_steps // 2 + 1:
            for group in opt.param_groups:
                group["lr"] = OVERFIT_LR_LATE
        opt.zero_grad(set_to_none=True)
        loss.backward()
        reached |= {i for i, p in enumerate(params) if i not in reached and p.grad is not None and bool(p.grad.any())}
        if steps == 1 and not reached:
            return OverfitResult(samples, 0, first, last, best, has_gradient=False)
        # the common default threshold (1.0); keeps one bad step from ending the probe
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    accuracy = None
    with torch.no_grad():
        metrics = task.metrics(model, batch)
    if "accuracy" in metrics:
        total, count = metrics["accuracy"]
        accuracy = float(total) / float(count)
    total = sum(p.numel() for p in params)
    share = sum(params[i].numel() for i in reached) / total if total else 1.0
    return OverfitResult(samples, steps, first, last, best, True, accuracy, share)


# ---------------------------------------------------------------- BatchNorm


@dataclass(frozen=True)
class BatchNormCheck:
    modules: list[str]
    """BatchNorm modules that keep running statistics."""
    updated_in_train: bool
    """A training forward updated their running statistics (it should)."""
    updated_in_eval: bool
    """An evaluation forward (model.eval(), then task.metrics, as evaluate() does) updated
    them (it should not: the model stayed in training mode)."""
    stats_frozen: list[str] = field(default_factory=list)
    """Modules whose running mean and variance did not change in a training forward although
    their counter did (momentum 0, or statistics reset or overwritten in forward)."""
    momentum: list[float | None] = field(default_factory=list)
    """Each module's momentum (None: a cumulative average)."""


def batchnorm_check(task: Task, model: nn.Module, batch: Any) -> BatchNormCheck | None:
    """None when the model has no BatchNorm with running statistics."""
    bns = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    }
    if not bns:
        return None

    def counters() -> list[int]:
        return [int(m.num_batches_tracked) for m in bns.values()]  # type: ignore[arg-type]

    def stats() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(m.running_mean.clone(), m.running_var.clone()) for m in bns.values()]  # type: ignore[union-attr]

    was_training = model.training
    try:
        with torch.no_grad():
            model.train()
            before, values = counters(), stats()
            task.loss(model, batch)
            in_train = counters() != before
            frozen = [name for name, (m0, v0), (m1, v1) in zip(bns, values, stats(), strict=True)
                      if torch.equal(m0, m1) and torch.equal(v0, v1)]
            model.eval()
            before = counters()
            task.metrics(model, batch)
            in_eval = counters() != before
    finally:
        model.train(was_training)
    return BatchNormCheck(list(bns), in_train, in_eval, frozen if in_train else [],
                          [m.momentum for m in bns.values()])


# ---------------------------------------------------------------- short run


@dataclass
class RunStats:
    """What the short run showed, read from its metrics rows."""

    steps: int
    lr: float
    batch_size: int
    optimizer: str
    clip_norm: float
    status: str
    """'completed', or 'halted' when a non-finite loss or gradient stopped it."""
    losses: list[float] = field(default_factory=list)
    """train/loss of every applied step."""
    clipped: list[float] = field(default_factory=list)
    """train/clipped (1.0 when clipping scaled the gradient down) of every applied step."""
    grad_norms: list[float] = field(default_factory=list)
    """train/grad_norm (before clipping) of every applied step."""
    alpha: list[float] = field(default_factory=list)
    update_ratio: list[float] = field(default_factory=list)
    dead_frac: list[float] = field(default_factory=list)
    saturated_frac: list[float] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    """Largest Hessian eigenvalue (measured for plain SGD only, where 2/lr is the bound)."""
    noise_scale: float | None = None
    """Last per-sample B_simple (samples), EMA'd over the measurements."""
    outliers_max_std: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """layer -> [(step, input max|x|/std)] from the outlier instrument."""
    message: str = ""


def probe_config(cfg: RunConfig, steps: int) -> RunConfig:
    """The configured run, shortened to ``steps`` with the instruments on and nothing that
    would hide the raw dynamics (no guards) or cost time without telling anything."""
    every = max(2, steps // 5)  # five measurements (plus Alpha's follow-ups) in the run
    # the configured warmup, compressed to the same fraction of the short run; then the peak
    # LR held constant (a decay would hide an LR that is too high at its peak)
    warmup = min(steps // 4, round(cfg.schedule.warmup_steps * steps / cfg.train.steps))
    include = ["hess_max_ev"] if cfg.optim.name == "sgd" else []
    over: dict[str, Any] = {
        "train": {"steps": steps, "eval_every": 0, "eval_batches": 2},
        "schedule": {"name": "constant", "warmup_steps": warmup},
        "log": {"every": 1, "tensorboard": False, "mlflow": False, "wandb": False,
                "sample_chars": 0, "progress": "off"},
        "guards": {"enabled": False},
        "checkpoint": {"every_steps": 0, "every_minutes": 0.0, "final": False},  # read, never resumed
        "instruments": {"preset": "economy", "every": every, "include": include,
                        # 20 power iterations: the sharpness to ~1e-2 on small models
                        "hess_iters": 20},
    }  # fmt: skip
    return RunConfig.model_validate(deep_merge(cfg.to_dict(), over))


def short_run(cfg: RunConfig, task: Task, run_dir: Path, steps: int) -> RunStats:
    """Train ``steps`` steps of the configured run (see probe_config) into ``run_dir``."""
    from trainwell.sinks import read_jsonl
    from trainwell.train.loop import run

    pcfg = probe_config(cfg, steps)
    status, message = "completed", ""
    try:
        with warnings.catch_warnings():  # what resume would do with the data: a probe is never resumed
            warnings.simplefilter("ignore", DataWarning)
            run(pcfg, task=task, run_dir=run_dir, progress=False)
    except TrainingHalted as e:  # NaN/Inf: the guards are off, so this is the divergence itself
        status, message = "halted", str(e)
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    st = RunStats(
        steps=steps, lr=cfg.optim.lr, batch_size=_run_batch_size(cfg, task), optimizer=cfg.optim.name,
        clip_norm=cfg.clip.max_norm, status=status, message=message,
    )  # fmt: skip
    from trainwell.instruments.outliers import series

    st.outliers_max_std = series(rows, "in_max_std")
    for r in rows:
        if "train/loss" in r:
            st.losses.append(float(r["train/loss"]))
            st.clipped.append(float(r.get("train/clipped", 0.0)))
            st.grad_norms.append(float(r.get("train/grad_norm", math.nan)))
        for key, out in (
            ("inst/alpha", st.alpha),
            ("inst/update_ratio", st.update_ratio),
            ("inst/act_dead_frac", st.dead_frac),
            ("inst/act_saturated_frac", st.saturated_frac),
            ("inst/hess_max_ev", st.sharpness),
        ):
            if key in r and r[key] is not None:
                out.append(float(r[key]))
        if r.get("inst/noise_scale_ps") is not None:
            st.noise_scale = float(r["inst/noise_scale_ps"])
    return st


def _run_batch_size(cfg: RunConfig, task: Task) -> int:
    """The short run's batch size: the configured one, or the size of the batches of data
    that comes in batches (a generator of batches of 64 trains on 64 whatever the config says)."""
    try:
        return batch_size_of(task.train_data(), task.collate, batch_size=cfg.train.batch_size, seed=cfg.seed)
    except DataError:  # a stream with no batch left to measure: the configured size
        return cfg.train.batch_size


def median(values: list[float]) -> float:
    """Median of the finite values (nan when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


