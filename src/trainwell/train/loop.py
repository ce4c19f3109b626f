"""The training loop: build everything from a RunConfig, then step, log, evaluate, finish.

Reads top to bottom. Only this module and step.py change training state; the other
components return numbers (instruments), verdicts (guards) or write (sinks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import IterableDataset

from trainwell.config import RunConfig
from trainwell.data.loader import BatchLoader, IterableLoader
from trainwell.data.sampler import ResumableSampler
from trainwell.errors import ConfigError, TrainingHalted
from trainwell.optim import build_optimizer, build_schedule
from trainwell.sinks import ConsoleProgress, build_sinks, progress_enabled
from trainwell.tasks import Task, build_task
from trainwell.train.ema import build_ema
from trainwell.train.evaluate import evaluate
from trainwell.train.precision import resolve_precision
from trainwell.train.rng import seed_everything
from trainwell.train.rundir import environment, make_run_dir, write_json
from trainwell.train.state import TrainState
from trainwell.train.step import FinalActivationProbe, apply_update, compute_update, skip_update

MAX_CONSECUTIVE_SKIPS = 100
"""Without an update for this many iterations in a row the run stops with a diagnosis
instead of spinning (fp16 start-up overflows take ~10-20)."""


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]
    """Final metrics: eval/* (and eval_ema/*) at the end, plus the last train/loss."""
    steps: int
    wall_time_s: float
    model: nn.Module
    sample: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available; use auto or cpu")
    return device


def build_state(cfg: RunConfig, task: Task, device: torch.device) -> TrainState:
    model = task.build_model().to(device)
    optimizer = build_optimizer(cfg.optim, model)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    schedule = build_schedule(cfg.schedule, cfg.train.steps)
    data = task.train_data()
    if isinstance(data, IterableDataset):
        loader: BatchLoader | IterableLoader = IterableLoader(
            data, task.collate, device, cfg.train.batch_size, cfg.train.accumulate
        )
    else:
        sampler = ResumableSampler(len(data), seed=cfg.seed)
        loader = BatchLoader(data, sampler, task.collate, device, cfg.train.batch_size, cfg.train.accumulate)
    forward_model = torch.compile(model) if cfg.train.compile else model
    return TrainState(
        model=forward_model,
        optimizer=optimizer,
        schedule=schedule,
        peak_lr=cfg.optim.lr,
        precision=resolve_precision(cfg.precision, device),
        loader=loader,
        device=device,
        ema=build_ema(model, cfg.ema.decay),
    )


def run(
    cfg: RunConfig,
    *,
    task: Task | None = None,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train according to ``cfg``; everything the run produces goes to its run directory."""
    t_begin = time.perf_counter()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = task if task is not None else build_task(cfg)
    st = build_state(cfg, task, device)
    eval_data = task.eval_data()
    probe = FinalActivationProbe(st.model)

    out_dir = make_run_dir(run_dir, cfg.task.name)
    (out_dir / "config.toml").write_text(cfg.to_toml())
    write_json(out_dir / "env.json", environment(cfg.seed, device, st.precision.name))
    sinks = build_sinks(cfg.log, out_dir, cfg.to_dict())  # metrics.jsonl always, TensorBoard...
    show = progress if progress is not None else progress_enabled(cfg.log.progress)
    bar = ConsoleProgress(cfg.train.steps, enabled=show, unit=task.unit)
    bar.log(f"trainwell: task {cfg.task.name}, {_count_params(st.model):,} parameters, "
            f"{cfg.train.steps} steps on {device} ({st.precision.name}); run dir {out_dir}")

    history: list[dict[str, Any]] = []
    last_eval: dict[str, float] = {}
    skips = consecutive_skips = 0
    rate_t, rate_samples, rate_targets = time.perf_counter(), 0, 0
    status = "failed"
    try:
        while st.step < cfg.train.steps:
            t0 = time.perf_counter()
            micro = st.loader.next()
            data_time = time.perf_counter() - t0
            record, _ = compute_update(
                st, task, micro, max_norm=cfg.clip.max_norm, probe=probe, data_time=data_time, t_start=t0
            )
            st.iteration += 1
            if record.applied and record.finite:
                apply_update(st)
                consecutive_skips = 0
                st.samples_seen += record.n_samples
                st.targets_seen += record.n_targets
                rate_samples += record.n_samples
                rate_targets += record.n_targets
            else:
                # a non-finite loss or gradient never reaches the weights (counted, logged)
                skip_update(st)
                skips += 1
                consecutive_skips += 1
                if consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                    raise TrainingHalted(
                        f"no finite update for {consecutive_skips} iterations in a row (last loss "
                        f"{record.loss}, grad norm {record.grad_norm}) at step {st.step}: lower optim.lr, "
                        "check the data for NaN/Inf, or use precision = 'fp32'"
                    )
                continue

            bar.update(st.step, record.loss, record.lr, _rate(task.unit, rate_samples, rate_targets, rate_t))
            if st.step % cfg.log.every == 0 or st.step == 1:
                now = time.perf_counter()
                metrics = _train_metrics(record, task.unit, rate_samples, rate_targets, now - rate_t)
                metrics["guard/skips"] = skips
                rate_t, rate_samples, rate_targets = now, 0, 0
                for sink in sinks:
                    sink.write(st.step, metrics)
                history.append({"step": st.step, **metrics})
            if cfg.train.eval_every and st.step % cfg.train.eval_every == 0 and st.step < cfg.train.steps:
                last_eval = _evaluate_all(cfg, task, st, eval_data, sinks, bar, history)
        if eval_data is not None:
            last_eval = _evaluate_all(cfg, task, st, eval_data, sinks, bar, history)
        status = "completed"
    finally:
        bar.close()
        probe.close()
        wall = time.perf_counter() - t_begin
        final = {**last_eval}
        train_rows = [h for h in history if "train/loss" in h]
        if train_rows:
            final["train/loss"] = train_rows[-1]["train/loss"]
        summary = {
            "status": status,
            "task": cfg.task.name,
            "metric": f"eval/{task.metric}",
            "higher_is_better": task.higher_is_better,
            "steps": st.step,
            "iterations": st.iteration,
            "skipped": skips,
            "samples": st.samples_seen,
            "targets": st.targets_seen,
            "wall_time_s": round(wall, 3),
            "final": final,
        }
        write_json(out_dir / "summary.json", summary)
        for sink in sinks:
            sink.close()

    sample = None
    if cfg.log.sample_chars:
        sample = task.sample(_plain(st.model), cfg.log.sample_chars)
        if sample is not None:
            (out_dir / "sample.txt").write_text(sample)
    _print_end(bar, cfg, task, final, wall, sample)
    return RunResult(out_dir, final, st.step, wall, _plain(st.model), sample, history)


# ---------------------------------------------------------------- helpers


def _evaluate_all(cfg, task, st, eval_data, sinks, bar, history) -> dict[str, float]:  # noqa: ANN001
    if eval_data is None:
        return {}
    kwargs = dict(
        batch_size=cfg.train.eval_batch_size or cfg.train.batch_size,
        max_batches=cfg.train.eval_batches,
        device=st.device,
        precision=st.precision,
    )
    results = {f"eval/{k}": v for k, v in evaluate(task, st.model, eval_data, optimizer=st.optimizer, **kwargs).items()}
    if st.ema is not None:
        ema = evaluate(task, st.ema.module, eval_data, **kwargs)
        results.update({f"eval_ema/{k}": v for k, v in ema.items()})
    for sink in sinks:
        sink.write(st.step, results)
    history.append({"step": st.step, **results})
    shown = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
    bar.log(f"step {st.step}: {shown}")
    return results


def _train_metrics(record, unit: str, samples: int, targets: int, seconds: float) -> dict[str, float]:  # noqa: ANN001
    m: dict[str, float] = {
        "train/loss": record.loss,
        "train/grad_norm": record.grad_norm,
        "train/clipped": float(record.clipped),
        "train/lr": record.lr,
        "train/clip_norm": record.clip_norm,
        "train/final_act_norm": record.final_act_norm,
        "sys/step_time_s": record.time_s,
        "sys/data_time_frac": record.data_time_s / record.time_s if record.time_s > 0 else 0.0,
        "sys/samples_per_s": samples / seconds if seconds > 0 else 0.0,
    }
    if unit == "tokens":
        m["sys/tokens_per_s"] = targets / seconds if seconds > 0 else 0.0
    if record.loss_scale != 1.0:
        m["train/loss_scale"] = record.loss_scale
    for name, v in record.components.items():
        m[f"train/loss/{name}"] = v
    return m


def _rate(unit: str, samples: int, targets: int, since: float) -> float:
    dt = time.perf_counter() - since
    return (targets if unit == "tokens" else samples) / dt if dt > 0 else 0.0


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _plain(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


def _print_end(bar, cfg, task, final, wall, sample) -> None:  # noqa: ANN001
    key = f"eval/{task.metric}"
    head = f"done in {wall:.1f}s"
    if key in final:
        head += f": {key} = {final[key]:.4f}"
    bar.log(head)
    if sample:
        bar.log("sample:\n" + sample)
