"""The training loop: build everything from a RunConfig, then step, decide, log, evaluate,
checkpoint, finish.

Reads top to bottom; ``_one_step`` is the algorithm. Only this module, step.py and
interventions.py change training state; the other components return numbers
(instruments), verdicts (the autopilot) or write (sinks, store).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell import drills
from trainwell.config import RunConfig
from trainwell.data.source import build_loader
from trainwell.dist import DistContext
from trainwell.dist import setup as setup_distributed
from trainwell.errors import ConfigError, TrainingHalted
from trainwell.guards.autopilot import Autopilot
from trainwell.guards.base import Action
from trainwell.guards.prior import input_prior
from trainwell.instruments.presets import instrument_names
from trainwell.instruments.runner import InstrumentRunner
from trainwell.optim import build_optimizer, build_schedule
from trainwell.sinks import ConsoleProgress, build_sinks, progress_enabled
from trainwell.sinks.base import Sink
from trainwell.tasks import Task, build_task
from trainwell.train import throughput
from trainwell.train.checkpointing import Checkpointer
from trainwell.train.ema import build_ema
from trainwell.train.evaluate import evaluate_all
from trainwell.train.interventions import Interventions
from trainwell.train.metrics import Rate, logged_eval, train_metrics
from trainwell.train.precision import resolve_precision
from trainwell.train.probe import FinalActivationProbe
from trainwell.train.record import StepRecord
from trainwell.train.rng import seed_everything
from trainwell.train.rundir import finish_run, make_run_dir, resume_run, start_run
from trainwell.train.signals import Interrupted, StopRequest
from trainwell.train.state import TrainState, unwrap
from trainwell.train.step import ONE_PROCESS, StepOutput, apply_update, compute_update, skip_update


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
    resumed_from: int | None = None
    """The checkpoint step this run resumed from (None: started fresh)."""


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


def build_state(cfg: RunConfig, task: Task, device: torch.device, dist: DistContext | None = None) -> TrainState:
    model = plain = task.build_model().to(device)
    precision = resolve_precision(cfg.precision, device)
    if dist is not None:  # before the optimizer: FSDP2 turns the parameters into shards in place
        from trainwell.dist.wrap import wrap_model

        model = wrap_model(plain, dist, cfg.dist, precision.name)
    optimizer = build_optimizer(cfg.optim, plain, steps=cfg.train.steps)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    shard = (dist.rank, dist.world) if dist is not None else (0, 1)  # this rank's slice of each batch
    # a Dataset, in-memory data (batched fast path), a stream, or a DataLoader / batches (data/source.py)
    loader = build_loader(task.train_data(), task.collate, device, batch_size=cfg.train.batch_size,
                          accumulate=cfg.train.accumulate, seed=cfg.seed, shard=shard)
    return TrainState(
        model=torch.compile(model) if cfg.train.compile else model,
        optimizer=optimizer,
        # a submission's optimizer may bring its own schedule (lr_factor(step) -> factor)
        schedule=getattr(optimizer, "lr_factor", None) or build_schedule(cfg.schedule, cfg.train.steps),
        peak_lr=cfg.optim.lr,
        precision=precision,
        loader=loader,
        device=device,
        ema=build_ema(plain, cfg.ema.decay),
        dist=dist,
    )


@dataclass
class Flight:
    """Everything one run is made of, built once by ``_build``."""

    cfg: RunConfig
    task: Task
    st: TrainState
    out_dir: Path
    main: bool
    """Whether this process writes the run directory (rank 0, or the only process)."""
    pilot: Autopilot
    ckpt: Checkpointer
    interventions: Interventions
    bar: Any
    sinks: list[Sink]
    rate: Rate
    probe: FinalActivationProbe | None
    runner: InstrumentRunner | None
    eval_data: Any
    resumed_from: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_eval: dict[str, float] = field(default_factory=dict)


def run(
    cfg: RunConfig,
    *,
    task: Task | None = None,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
    resume: bool = False,
    extra_sinks: Sequence[Sink] = (),
) -> RunResult:
    """Train according to ``cfg``; everything the run produces goes to its run directory.
    ``resume``: continue from the newest valid checkpoint in ``run_dir`` if it has one.
    ``extra_sinks``: more sinks for the writing process (a study's pruning reads evaluations)."""
    t_begin = time.perf_counter()
    f = _build(cfg, task, run_dir, progress, resume, extra_sinks)
    status = "failed"
    try:
        with StopRequest() as stop:
            while f.st.step < cfg.train.steps:
                _stop_if_asked(f, stop)
                _one_step(f)
        _finish_training(f)
        status = "completed"
    except (Interrupted, TrainingHalted) as e:
        status = "interrupted" if isinstance(e, Interrupted) else "halted"
        raise
    except BaseException as e:
        if f.st.dist is not None:
            f.st.dist.log_failure(f.out_dir, e)  # ranks/rank{N}.log: each rank its own failure
        raise
    finally:
        wall = time.perf_counter() - t_begin
        final = finish_run(f, status, wall)
    return _end(f, final, wall)


def _one_step(f: Flight) -> None:
    """One update: the algorithm."""
    st, cfg = f.st, f.cfg
    t0 = time.perf_counter()
    micro = st.loader.next()  # [(sample ids (b,), batch)] x accumulate
    record, out = compute_update(st, f.task, micro, max_norm=cfg.clip.max_norm, probe=f.probe,
                                 data_time=time.perf_counter() - t0, t_start=t0, runner=f.runner,
                                 measure_inputs=cfg.guards.enabled)  # forward, backward, clip, ONE host read
    st.iteration = record.iteration
    verdict = f.pilot.decide(record)  # after backward, before the optimizer step
    applied = verdict.action is Action.APPLY and record.applied
    if applied:
        measured = _apply(f, micro, record, out)
    else:
        skip_update(st)  # nothing advances: schedule, EMA, guard windows
    f.pilot.after(record, verdict)  # the guards' windows learn from applied updates only
    f.interventions.act(verdict, record, out)  # quarantine, rollback or stop
    if applied:
        _log(f, record, measured)  # measured: the instruments' readings of this update
        _evaluate_if_due(f)
        _checkpoint_if_due(f)


def _apply(f: Flight, micro: list, record: StepRecord, out: StepOutput) -> dict[str, float]:
    """The optimizer step (schedule, EMA), with the instruments around it when they are due."""
    st, step = f.st, f.st.step
    if out.runner_due:
        f.runner.before_update(step, micro[0][1], record.loss, record.lr)
    apply_update(st, out.lr_factor)
    measured = f.runner.after_update(step) if out.runner_due else {}
    st.samples_seen += record.n_samples
    st.targets_seen += record.n_targets
    f.rate.add(record.n_samples, record.n_targets)
    return measured


def _log(f: Flight, record: StepRecord, measured: dict[str, float]) -> None:
    step = f.st.step
    f.bar.update(step, record.loss, record.lr, f.rate.per_second(f.task.unit) if f.bar.enabled else 0.0)
    if step % f.cfg.log.every == 0 or step == 1 or measured:
        _publish(f, {**train_metrics(record, f.task.unit, f.rate), **f.pilot.metrics(), **measured})


def _publish(f: Flight, metrics: dict[str, float]) -> None:
    for sink in f.sinks:
        sink.write(f.st.step, metrics)
    f.history.append({"step": f.st.step, **metrics})


def _evaluate(f: Flight) -> None:
    if f.eval_data is None:
        return
    f.last_eval = results = evaluate_all(f.cfg.train, f.task, f.st, f.eval_data)
    _publish(f, results)
    f.bar.log(f"step {f.st.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))


def _evaluate_if_due(f: Flight) -> None:
    every, step = f.cfg.train.eval_every, f.st.step
    if every and step % every == 0 and step < f.cfg.train.steps:
        _evaluate(f)


def _checkpoint_if_due(f: Flight) -> None:
    if not f.ckpt.due(f.st.step) or f.st.step >= f.cfg.train.steps:
        return
    failure = f.ckpt.save(f.st, f.pilot)
    if failure is not None:
        f.pilot.log("checkpoint_failed", failure, step=f.st.step)
        f.bar.log(f"warning: {failure}")
    f.interventions.saved(healthy=failure is None and f.ckpt.last_healthy)


def _stop_if_asked(f: Flight, stop: StopRequest) -> None:
    """SIGTERM/SIGINT: save, then raise Interrupted; every rank stops after the same step."""
    if not (f.st.dist or ONE_PROCESS).agree_stop(stop.requested):
        return
    failure = f.ckpt.save(f.st, f.pilot)
    where = "checkpoint saved" if failure is None else f"checkpoint FAILED: {failure}"
    f.pilot.log("interrupted", f"Stopped by signal {stop.signum} at step {f.st.step}; {where}.", step=f.st.step)
    raise Interrupted(stop.signum or 0, f"stopped by signal {stop.signum} at step {f.st.step} "
                      f"({where}); continue with: trainwell resume {f.out_dir}")


def _finish_training(f: Flight) -> None:
    """The final evaluation and checkpoint (not again for a run resumed at its end)."""
    if f.resumed_from is not None and f.resumed_from >= f.cfg.train.steps:
        # resumed from the final checkpoint (the process died after saving it): the final
        # evaluation is already in metrics.jsonl; do not log it twice
        f.last_eval = logged_eval(f.out_dir / "metrics.jsonl", f.st.step)
        f.bar.log(f"the run was already complete at step {f.st.step}")
        return
    _evaluate(f)
    failure = f.ckpt.save(f.st, f.pilot) if f.cfg.checkpoint.final else None
    if failure is not None:
        f.bar.log(f"warning: the final checkpoint failed: {failure}")


# ---------------------------------------------------------------- building and ending


def _build(cfg: RunConfig, task: Task | None, run_dir: str | Path | None, progress: bool | None, resume: bool,
           extra_sinks: Sequence[Sink]) -> Flight:
    dist = setup_distributed(cfg)  # None: a single process (no collective anywhere)
    main = dist is None or dist.main  # rank 0 writes the run dir; other ranks only their failures
    seed_everything(cfg.seed)  # the same on every rank: identical initial replicas
    device = resolve_device(cfg.train.device) if dist is None else dist.device
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = task if task is not None else build_task(cfg)
    st = build_state(cfg, task, device, dist)
    # the final-layer activation feeds the health tracker (rollback targets): guards off, none
    probe = FinalActivationProbe(st.model) if cfg.guards.enabled else None
    # instruments measure on rank 0's shard (the plain module: no collective)
    runner = InstrumentRunner(unwrap(st.model), task, cfg.instruments) if instrument_names(cfg.instruments) and main else None
    out_dir = make_run_dir(run_dir, cfg.task.name) if dist is None else _dist().shared_run_dir(dist, run_dir, cfg.task.name)
    # the data's input scale arms the input guard from the first step (bad data does not wait)
    pilot = Autopilot(cfg.guards, out_dir if main else None,
                      input_prior(st.loader, cfg.seed) if cfg.guards.enabled else None)
    ckpt = Checkpointer(cfg.checkpoint, out_dir, cfg.to_dict(), dist, _dist().sharded(st, out_dir) if dist else None,
                        runner=runner)
    show = progress if progress is not None else progress_enabled(cfg.log.progress)
    bar = ConsoleProgress(cfg.train.steps, enabled=show, unit=task.unit) if main else _dist().SilentProgress(cfg.train.steps)
    resumed_from = resume_run(st, pilot, ckpt, out_dir, bar) if resume else None
    if resumed_from is None and cfg.guards.enabled and cfg.guards.rollback:
        ckpt.keep_initial(st, pilot)  # a rollback target before the first checkpoint
    # fault drills (tests, demonstrations) wrap the loader, the loss and the schedule
    task = drills.arm(cfg.faults, st, task, 0 if dist is None else dist.rank, resumed=resumed_from is not None)
    sinks = [*build_sinks(cfg.log, out_dir, cfg.to_dict()), *extra_sinks] if main else []  # metrics.jsonl, TensorBoard...
    start_run(cfg, st, out_dir, main, bar)
    rate = Rate(*throughput.for_run(unwrap(st.model), task, device, st.precision.dtype, cfg.log.peak_tflops),
                device=device)
    return Flight(cfg, task, st, out_dir, main, pilot, ckpt, Interventions(cfg.guards, st, pilot, ckpt, bar.log),
                  bar, sinks, rate, probe, runner, task.eval_data(), resumed_from)


def _end(f: Flight, final: dict[str, float], wall: float) -> RunResult:
    cfg, st, dist = f.cfg, f.st, f.st.dist
    sample = None
    if cfg.log.sample_chars and (f.main or (dist is not None and dist.parallel == "fsdp")):  # FSDP: all ranks
        sample = f.task.sample(unwrap(st.model), cfg.log.sample_chars)
        if sample is not None and f.main:
            (f.out_dir / "sample.txt").write_text(sample)
    if dist is not None:
        dist.close()
    key = f"eval/{f.task.metric}"
    f.bar.log(f"done in {wall:.1f}s" + (f": {key} = {final[key]:.4f}" if key in final else ""))
    if sample:
        f.bar.log("sample:\n" + sample)
    return RunResult(f.out_dir, final, st.step, wall, unwrap(st.model), sample, f.history, f.resumed_from)


def _dist():  # noqa: ANN202
    """trainwell.dist's run-directory and checkpoint helpers, imported only by
    multi-process runs."""
    from trainwell.dist import runtime

    return runtime
