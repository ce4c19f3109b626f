"""The LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks",
sec. 3.3): train a fresh model for a few steps while the learning rate grows exponentially
from tiny to huge, and read off where the loss falls fastest and where it blows up.

Writes ``lr_find.json`` and ``lr_find.svg`` in its own run directory; touches nothing else
(a fresh model, its own data order, the global RNG restored).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainwell.config import RunConfig
from trainwell.data.draw import next_batch, probe_loader
from trainwell.data.source import loader_batch_size
from trainwell.errors import ConfigError
from trainwell.report.charts import Box, Line, Marker, line_chart
from trainwell.tasks import Task, build_task
from trainwell.train.rundir import make_run_dir, write_json

SMOOTHING = 0.9
"""EMA factor of the loss (with bias correction): the raw per-batch loss is too noisy to
differentiate; 0.98 averages ~50 batches, the usual choice for this test (fastai's finder)."""

DIVERGE_FACTOR = 4.0
"""The loss has diverged once the smoothed loss exceeds 4x its best value (the stop rule of
fastai's finder): far beyond noise, and every larger LR only makes it worse."""

MIN_DROP = 0.05
"""No good LR: the smoothed loss never fell more than 5% below where it started. A task that
learns at all drops far more than that in a range test (digits: ~90%, measured)."""

SUGGEST_FRACTION = 0.1
"""The suggestion is a tenth of the LR at the lowest smoothed loss: at the minimum the LR is
already at the edge of instability (the loss turns up just after), and a tenth of it sits in
the steep, stable part of the curve (Smith 2017; fastai's 'lr_min / 10')."""


@dataclass
class LRFindResult:
    run_dir: Path
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    found: bool = False
    suggested_lr: float | None = None
    steepest_lr: float | None = None
    """Where the smoothed loss falls fastest per decade of LR."""
    min_loss_lr: float | None = None
    diverged_lr: float | None = None
    """The first LR where the smoothed loss exceeded DIVERGE_FACTOR x its best (or went NaN)."""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["losses"] = [v if math.isfinite(v) else str(v) for v in self.losses]
        d["smoothed"] = [v if math.isfinite(v) else str(v) for v in self.smoothed]
        return d


def analyse(lrs: list[float], losses: list[float], result: LRFindResult) -> LRFindResult:
    """Fill ``result``'s analysis from the sweep (pure: numbers in, numbers out)."""
    result.lrs, result.losses = list(lrs), list(losses)
    result.smoothed = smooth(losses)
    sm = result.smoothed
    best_i, best = None, math.inf
    for i, v in enumerate(sm):
        if not math.isfinite(v) or v > DIVERGE_FACTOR * best:
            result.diverged_lr = lrs[i]
            break
        if v < best:
            best_i, best = i, v
    if best_i is None or not math.isfinite(sm[0]):
        result.message = "the loss was NaN/Inf from the first step: no learning rate works; check the model and loss"
        return result
    drop = (sm[0] - best) / abs(sm[0]) if sm[0] else 0.0
    if best_i == 0 or drop < MIN_DROP:
        result.message = (
            f"no good learning rate found between {lrs[0]:.3g} and {lrs[-1]:.3g}: the smoothed loss never fell "
            f"more than {MIN_DROP:.0%} below its start ({drop:.1%}); the model or the loss may be broken "
            "(trainwell diagnose checks), or the range is wrong"
        )
        return result
    result.min_loss_lr = lrs[best_i]
    # steepest descent per decade: finite differences of the smoothed loss over log10(lr)
    slopes = [
        (sm[i + 1] - sm[i - 1]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i - 1]))
        for i in range(1, best_i)
    ]
    if slopes:
        result.steepest_lr = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
    result.suggested_lr = SUGGEST_FRACTION * result.min_loss_lr
    result.found = True
    where = f"; the loss diverged at {result.diverged_lr:.3g}" if result.diverged_lr else "; no divergence up to the largest LR"
    result.message = (
        f"suggested lr {result.suggested_lr:.3g} (a tenth of {result.min_loss_lr:.3g}, where the smoothed loss "
        f"was lowest" + (f"; it fell fastest at {result.steepest_lr:.3g}" if result.steepest_lr else "") + ")" + where
    )
    return result


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected EMA; once a loss is non-finite every later value is too."""
    out, avg = [], 0.0
    for i, v in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * v if math.isfinite(avg) else avg
        out.append(avg / (1 - beta**i) if math.isfinite(v) and math.isfinite(avg) else math.inf)
        if not math.isfinite(v):
            avg = math.inf
    return out


def lr_range_test(
    cfg: RunConfig,
    *,
    task: Task | None = None,
    run_dir: str | Path | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
) -> LRFindResult:
    """Sweep the LR exponentially from ``min_lr`` to ``max_lr`` over ``steps`` batches with the
    configured optimizer, batch size and clipping; stop early once the loss diverged. The
    batches are the ones training would read (the training loader, seeded for the sweep):
    the task's data of any kind fit() takes (a dataset, a DataLoader, an iterable of batches,
    in-memory tensors)."""
    from trainwell.optim import build_optimizer
    from trainwell.train.flight import resolve_device

    if not 0 < min_lr < max_lr:
        raise ConfigError(f"--min-lr and --max-lr must satisfy 0 < min-lr < max-lr, got {min_lr:g} and {max_lr:g}")
    if steps < 10:
        raise ConfigError(f"--steps must be >= 10 (a curve needs points), got {steps}")
    task = task if task is not None else build_task(cfg)
    device = resolve_device(cfg.train.device)
    out_dir = make_run_dir(run_dir, f"{cfg.task.name}-lr-find")
    data = task.train_data()
    cfg = loader_batch_size(cfg, data)  # a DataLoader's batch size is the run's
    loader = probe_loader(data, task.collate, device, batch_size=cfg.train.batch_size, seed=cfg.seed + 1000)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = task.build_model().to(device)
        snapshot = copy.deepcopy(model.state_dict()) if model is task.build_model() else None
        model.train()
        opt = build_optimizer(cfg.optim, model)
        params = [p for g in opt.param_groups for p in g["params"]]
        lrs, losses = [], []
        best = math.inf
        first = None
        try:
            for i in range(steps):
                lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))
                for group in opt.param_groups:  # keep per-group ratios (muP, head groups)
                    group["lr"] = lr * group["initial_lr"] / cfg.optim.lr
                batch = next_batch(loader)
                first = batch if first is None else first
                out = task.loss(model, batch)
                loss = out.sum.float() / float(out.count)
                value = float(loss.detach())
                lrs.append(lr)
                losses.append(value)
                ema = smooth(losses)[-1]
                best = min(best, ema)
                if not math.isfinite(value) or ema > DIVERGE_FACTOR * best or not loss.requires_grad:
                    break  # diverged (or nothing to train): later points say nothing more
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip.max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip.max_norm)
                opt.step()
        finally:
            if snapshot is not None:
                model.load_state_dict(snapshot)
    result = analyse(lrs, losses, LRFindResult(out_dir))
    if len(losses) < 2 or not _has_grad(task, model, first):
        result.found, result.suggested_lr = False, None
        result.message = "the loss does not depend on the parameters (no gradient): no learning rate can help"
    write_json(out_dir / "lr_find.json", {**result.to_json(), "min_lr": min_lr, "max_lr": max_lr,
                                         "optimizer": cfg.optim.name, "configured_lr": cfg.optim.lr})
    (out_dir / "lr_find.svg").write_text(plot(result, cfg.optim.lr), encoding="utf-8")
    return result


PLOT_BOX = Box(width=640, height=400, left=64, right=16, top=14, bottom=48)


def plot(result: LRFindResult, configured_lr: float | None = None) -> str:
    """The curve as SVG: raw loss (faint), smoothed loss, and the LRs that matter."""
    if not result.lrs:
        return line_chart([], log_x=True, title="LR range test: no points", legend="svg", box=PLOT_BOX)
    finite = [v for v in result.smoothed if math.isfinite(v)]
    lo = min(finite, default=0.0)
    hi = result.smoothed[0] * 1.5 if finite and math.isfinite(result.smoothed[0]) else max(finite, default=1.0)
    markers = []
    if result.suggested_lr:
        markers.append(Marker(result.suggested_lr, "#1a7f37", f"suggested {result.suggested_lr:.2g}"))
    if result.diverged_lr:
        markers.append(Marker(result.diverged_lr, "#cf222e", f"diverged {result.diverged_lr:.2g}"))
    if configured_lr:
        markers.append(Marker(configured_lr, "#8250df", f"configured {configured_lr:.2g}"))
    return line_chart(
        [Line("loss per batch", result.lrs, result.losses, "#0969da", 1.0, 0.35),
         Line("smoothed loss", result.lrs, result.smoothed, "#0969da", 2.0)],
        markers=markers, title="LR range test" + ("" if result.found else ": no good learning rate found"),
        xlabel="learning rate (log scale)", ylabel="training loss", ylim=(lo - 0.05 * (hi - lo), hi),
        log_x=True, legend="svg", box=PLOT_BOX,
    )  # fmt: skip


def _has_grad(task: Task, model: torch.nn.Module, batch: Any) -> bool:
    """Whether the loss of ``batch`` (None: the sweep drew none) depends on the parameters."""
    return batch is not None and bool(task.loss(model, batch).sum.requires_grad)
