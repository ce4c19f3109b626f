"""The training loop: build everything from a RunConfig, then step, decide, log, evaluate,
checkpoint, finish.

Reads top to bottom. Only this module and step.py change training state; the other
components return numbers (instruments), verdicts (the autopilot) or write (sinks, store).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.config import RunConfig
from trainwell.data.source import build_loader
from trainwell.dist import DistContext
from trainwell.dist import setup as setup_distributed
from trainwell.errors import ConfigError, TrainingHalted
from trainwell.guards import faults
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
from trainwell.train.checkpointing import Checkpointer, truncate_metrics
from trainwell.train.ema import build_ema
from trainwell.train.evaluate import evaluate_all
from trainwell.train.metrics import Rate, final_metrics, logged_eval, train_metrics
from trainwell.train.precision import resolve_precision
from trainwell.train.probe import FinalActivationProbe
from trainwell.train.rng import seed_everything
from trainwell.train.rundir import environment, make_run_dir, write_json
from trainwell.train.signals import Interrupted, StopRequest
from trainwell.train.state import TrainState, unwrap
from trainwell.train.step import apply_update, compute_update, skip_update

_APPLY = Action.APPLY
"""Read once: ``Action.APPLY`` goes through the Enum class (0.2 us a read in Python 3.11)."""


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
    dist = setup_distributed(cfg)  # None: a single process (no collective anywhere)
    main = dist is None or dist.main  # rank 0 writes the run dir; other ranks only their failures
    seed_everything(cfg.seed)  # the same on every rank: identical initial replicas
    device = resolve_device(cfg.train.device) if dist is None else dist.device
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = task if task is not None else build_task(cfg)
    st = build_state(cfg, task, device, dist)
    eval_data = task.eval_data()
    # the final-layer activation feeds the health tracker (rollback targets): guards off, none
    probe = FinalActivationProbe(st.model) if cfg.guards.enabled else None
    # instruments measure on rank 0's shard (the plain module: no collective)
    # preset "off" with instruments.include runs just the included ones
    runner = InstrumentRunner(unwrap(st.model), task, cfg.instruments) if instrument_names(cfg.instruments) and main else None

    out_dir = make_run_dir(run_dir, cfg.task.name) if dist is None else _dist().shared_run_dir(dist, run_dir, cfg.task.name)
    # the data's input scale arms the input guard from the first step (bad data does not wait)
    pilot = Autopilot(cfg.guards, out_dir if main else None,
                      input_prior(st.loader, cfg.seed) if cfg.guards.enabled else None)
    ckpt = Checkpointer(cfg.checkpoint, out_dir, cfg.to_dict(), dist, _dist().sharded(st, out_dir) if dist else None)
    ckpt.runner = runner
    show = progress if progress is not None else progress_enabled(cfg.log.progress)
    bar = ConsoleProgress(cfg.train.steps, enabled=show, unit=task.unit) if main else _dist().SilentProgress(cfg.train.steps)
    resumed_from = _resume(st, pilot, ckpt, out_dir, bar) if resume else None
    if resumed_from is None and cfg.guards.enabled and cfg.guards.rollback:
        ckpt.keep_initial(st, pilot)  # a rollback target before the first checkpoint
    if main:
        (out_dir / "config.toml").write_text(cfg.to_toml())
        env = environment(cfg.seed, device, st.precision.name)
        write_json(out_dir / "env.json", env if dist is None else {**env, "dist": _dist().describe(dist)})
    sinks = [*build_sinks(cfg.log, out_dir, cfg.to_dict()), *extra_sinks] if main else []  # metrics.jsonl, TensorBoard...
    bar.log(f"trainwell: task {cfg.task.name}, {_count_params(st.model):,} parameters, "
            f"{cfg.train.steps} steps on {device} ({st.precision.name}); run dir {out_dir}")
    for line in cfg.advice():
        bar.log(f"advice: {line}")

    history: list[dict[str, Any]] = []
    last_eval: dict[str, float] = {}
    rollback_before: int | None = None
    """A rollback goes to a healthy checkpoint older than this: the step where the incident
    began, then older than the last target while the run has not recovered."""
    rate = Rate(*throughput.for_run(unwrap(st.model), task, device, st.precision.dtype, cfg.log.peak_tflops),
                device=device)
    rank = 0 if dist is None else dist.rank
    faulty = cfg.faults.any  # fault injection (tests, drills): off by default; a property, read once
    live_bar = main and show  # the progress bar's rate is worth computing only when it is drawn
    status = "failed"
    try:
        with StopRequest() as stop:
            while st.step < cfg.train.steps:
                if stop.requested if dist is None else dist.agree_stop(stop.requested):  # all ranks stop together
                    failure = ckpt.save(st, pilot)
                    where = "checkpoint saved" if failure is None else f"checkpoint FAILED: {failure}"
                    pilot.log("interrupted", f"Stopped by signal {stop.signum} at step {st.step}; {where}.", step=st.step)
                    raise Interrupted(stop.signum or 0, f"stopped by signal {stop.signum} at step {st.step} "
                                      f"({where}); continue with: trainwell resume {out_dir}")
                t0 = time.perf_counter()
                micro = st.loader.next()
                data_time = time.perf_counter() - t0
                it = st.iteration + 1
                if faulty:
                    faults.kill_if_due(cfg.faults, it, rank, resumed=resumed_from is not None)
                    micro = [(idx, faults.apply_to_batch(cfg.faults, it, b, idx, rank)) for idx, b in micro]
                    st.extra_lr_factor = faults.lr_factor(cfg.faults, it)
                record, out = compute_update(
                    st, task, micro, max_norm=cfg.clip.max_norm, probe=probe, data_time=data_time,
                    t_start=t0, force_overflow=faulty and faults.force_overflow(cfg.faults, it),
                    nan_loss=faulty and faults.nan_loss(cfg.faults, it, rank), runner=runner,
                    measure_inputs=cfg.guards.enabled,
                )
                st.iteration = it

                # --- the one decision point: after backward, before the optimizer step
                verdict = pilot.decide(record)
                action = verdict.action
                applied = action is _APPLY and record.applied
                measured: dict[str, float] = {}
                if applied:
                    # the guards learn from the step now, right after deciding, while their code
                    # and windows are still in the CPU caches (the optimizer step evicts them)
                    pilot.after(record, verdict)
                    step_before = st.step
                    if out.runner_due:  # asked once, in compute_update
                        runner.before_update(step_before, micro[0][1], record.loss, record.lr)
                        apply_update(st, out.lr_factor)
                        measured = runner.after_update(step_before)
                    else:
                        apply_update(st, out.lr_factor)
                    st.samples_seen += record.n_samples
                    st.targets_seen += record.n_targets
                    rate.add(record.n_samples, record.n_targets)
                else:
                    skip_update(st)  # nothing advances: schedule, EMA, guard windows
                st.extra_lr_factor = 1.0
                if not applied:
                    pilot.after(record, verdict)
                if action is not _APPLY:  # an intervention
                    if action is Action.SKIP:
                        _quarantine(st, pilot, out, record, verdict.reason)
                    elif action is Action.ROLLBACK:
                        bound = st.step if rollback_before is None else min(rollback_before, st.step)
                        rollback_before = _rollback(st, pilot, ckpt, cfg, verdict, bar, bound)
                        continue
                    elif action is Action.STOP:
                        ckpt.save(st, pilot, healthy=False)
                        raise TrainingHalted(verdict.message or verdict.reason)
                if not applied:
                    continue

                if live_bar:
                    bar.update(st.step, record.loss, record.lr, rate.per_second(task.unit))
                if st.step % cfg.log.every == 0 or st.step == 1 or measured:
                    metrics = {**train_metrics(record, task.unit, rate), **pilot.metrics(), **measured}
                    for sink in sinks:
                        sink.write(st.step, metrics)
                    history.append({"step": st.step, **metrics})
                if cfg.train.eval_every and st.step % cfg.train.eval_every == 0 and st.step < cfg.train.steps:
                    last_eval = evaluate_all(cfg, task, st, eval_data, sinks, bar, history)
                if ckpt.due(st.step) and st.step < cfg.train.steps:
                    failure = ckpt.save(st, pilot)
                    if failure is None and ckpt.last_healthy:
                        rollback_before = None  # healthy again: later incidents may use this one
                    if failure is not None:
                        pilot.log("checkpoint_failed", failure, step=st.step)
                        bar.log(f"warning: {failure}")
        if resumed_from is not None and resumed_from >= cfg.train.steps:
            # resumed from the final checkpoint (the process died after saving it): the
            # final evaluation is already in metrics.jsonl; do not log it twice
            last_eval = logged_eval(out_dir / "metrics.jsonl", st.step)
            bar.log(f"the run was already complete at step {st.step}")
        else:
            if eval_data is not None:
                last_eval = evaluate_all(cfg, task, st, eval_data, sinks, bar, history)
            failure = ckpt.save(st, pilot) if cfg.checkpoint.final else None  # at the end
            if failure is not None:
                bar.log(f"warning: the final checkpoint failed: {failure}")
        status = "completed"
    except Interrupted:
        status = "interrupted"
        raise
    except TrainingHalted:
        status = "halted"
        raise
    except BaseException as e:
        if dist is not None:
            dist.log_failure(out_dir, e)  # ranks/rank{N}.log: each rank its own failure
        raise
    finally:
        bar.close()
        if probe is not None:
            probe.close()
        ckpt.close()
        if runner is not None:
            _save_instruments(runner, out_dir, bar)
        wall = time.perf_counter() - t_begin
        final = final_metrics(last_eval, history)
        if main:
            write_json(out_dir / "summary.json", {
                "status": status, "task": cfg.task.name, "metric": f"eval/{task.metric}",
                "higher_is_better": task.higher_is_better, "steps": st.step, "iterations": st.iteration,
                "samples": st.samples_seen, "targets": st.targets_seen, "wall_time_s": round(wall, 3),
                "resumed_from": resumed_from, "autopilot": pilot.metrics(), "final": final,
            })
        for sink in sinks:
            sink.close()
        if pilot.logbook is not None and pilot.logbook.events():
            pilot.logbook.write_markdown()

    sample = None
    if cfg.log.sample_chars and (main or (dist is not None and dist.parallel == "fsdp")):  # FSDP: all ranks
        sample = task.sample(unwrap(st.model), cfg.log.sample_chars)
        if sample is not None and main:
            (out_dir / "sample.txt").write_text(sample)
    if dist is not None:
        dist.close()
    _print_end(bar, task, final, wall, sample)
    return RunResult(out_dir, final, st.step, wall, unwrap(st.model), sample, history, resumed_from)


# ---------------------------------------------------------------- interventions


def _resume(st: TrainState, pilot: Autopilot, ckpt: Checkpointer, out_dir: Path, bar: ConsoleProgress) -> int | None:
    info, skipped = ckpt.resume(st, pilot)
    for message in skipped:
        bar.log(f"warning: {message}")
    if info is None:
        bar.log(f"no valid checkpoint in {out_dir}; starting fresh")
        return None
    main = st.dist is None or st.dist.main
    dropped = truncate_metrics(out_dir / "metrics.jsonl", info.step) if main else 0  # rank 0 owns the file
    restart = st.dist.restart if st.dist is not None else 0  # torchrun restarted the group after a rank died
    pilot.log("resume", f"Resumed from the checkpoint at step {info.step} ({dropped} metric rows "
              f"logged after it were dropped and will be logged again)"
              + (f" after elastic restart {restart}." if restart else "."), step=info.step, skipped=skipped)
    bar.log(f"resumed from step {info.step} ({info.path})")
    return info.step


def _quarantine(st: TrainState, pilot: Autopilot, out, record, reason: str) -> None:  # noqa: ANN001
    """A refused batch: find the samples responsible and never serve them again. A
    non-finite update blames only samples whose own loss is non-finite (a blow-up with
    finite per-sample losses is numerical, not the data's fault); a spike blames the
    extreme per-sample losses (one extra look at this batch's losses, no extra forward)."""
    if not (pilot.cfg.enabled and pilot.cfg.quarantine):
        return
    if st.dist is not None:  # every rank judges every rank's samples: the same quarantine everywhere
        out = _dist().gather_step_output(st.dist, out)
    why = "extreme or non-finite per-sample loss"
    inputs = out.per_sample_input_rms() if reason.startswith("input_") else None
    if inputs is not None:
        why = "input scale far outside the usual range"
        ids, rms = inputs
        bad = ids[pilot.inputs.outliers(rms)].tolist()
    elif not out.per_sample:
        return
    else:
        ids = torch.cat([i for i, _ in out.per_sample])
        losses = torch.cat([loss.float().cpu() for _, loss in out.per_sample])
        if reason == "nonfinite":
            finite = torch.isfinite(losses)
            # every loss non-finite: the model blew up, not the data (a bad sample leaves the
            # others finite); blaming the whole batch emptied the dataset at a too-high lr
            bad = ids[~finite].tolist() if finite.any() else []
        else:
            bad = pilot.bad_samples(losses, ids)
    if bad and pilot.on_quarantine(bad, {"loss": record.loss}, step=st.step, iteration=st.iteration, reason=why):
        st.loader.exclude(frozenset(pilot.quarantine.ids()))  # a no-op where ids are stream positions


def _rollback(st, pilot, ckpt, cfg, verdict, bar, before: int) -> int:  # noqa: ANN001
    """Restore the newest healthy checkpoint older than ``before`` with a lower LR and
    clipping (OPT's recipe). Returns the target's step (the next rollback goes further back)."""
    from_step, lr_before, clip_before = st.step, st.lr_mult, st.clip_mult
    restored = ckpt.rollback(st, pilot, cfg.guards.data_skip, before)  # the step rolled back to
    if restored is None:
        ckpt.save(st, pilot, healthy=False)
        raise TrainingHalted(f"{verdict.message or verdict.reason} A rollback was due, but there is no "
                             "healthy checkpoint to roll back to: save more often (checkpoint.every_steps) "
                             "or lower optim.lr.")
    st.lr_mult, st.clip_mult = pilot.rollback_multipliers(lr_before, clip_before)
    st.loader.exclude(frozenset(pilot.quarantine.ids()))
    pilot.on_rollback(from_step, restored, lr_before, st.lr_mult, clip_before, st.clip_mult,
                      iteration=st.iteration, data_skip=cfg.guards.data_skip, reason=verdict.reason)
    bar.log(f"autopilot: {verdict.reason} at step {from_step}; rolled back to step {restored}, "
            f"lr x{st.lr_mult:g}, clip x{st.clip_mult:g}")
    return restored


# ---------------------------------------------------------------- helpers


def _save_instruments(runner: InstrumentRunner, out_dir: Path, bar: ConsoleProgress) -> None:
    """Histograms for the report, and what the instruments could not measure."""
    from trainwell.report import append_histograms

    by_step: dict[int, dict[str, Any]] = {}
    for name, hists in runner.histograms().items():
        for h in hists:
            by_step.setdefault(int(h.step), {})[name] = h
    for step in sorted(by_step):
        append_histograms(out_dir, by_step[step])
    for line in runner.warnings:
        bar.log(f"instruments: {line}")
    runner.close()


def _dist():  # noqa: ANN202
    """trainwell.dist's run-directory and checkpoint helpers, imported only by
    multi-process runs."""
    from trainwell.dist import runtime

    return runtime


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _print_end(bar, task, final, wall, sample) -> None:  # noqa: ANN001
    key = f"eval/{task.metric}"
    head = f"done in {wall:.1f}s" + (f": {key} = {final[key]:.4f}" if key in final else "")
    bar.log(head)
    if sample:
        bar.log("sample:\n" + sample)
