"""The training loop: build everything from a RunConfig, then step, decide, log, evaluate,
checkpoint, finish.

Reads top to bottom; ``_one_step`` is the algorithm. Only this module, step.py and
interventions.py change training state; the other components return numbers
(instruments), verdicts (the autopilot) or write (sinks, store).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from trainwell.config import RunConfig
from trainwell.errors import TrainingHalted
from trainwell.guards.base import Action
from trainwell.sinks.base import Sink
from trainwell.sinks.console import quiet
from trainwell.tasks import Task
from trainwell.train.evaluate import evaluate_all
from trainwell.train.flight import Flight, build_flight
from trainwell.train.metrics import logged_eval, train_metrics
from trainwell.train.reads import ONE_PROCESS
from trainwell.train.record import StepRecord
from trainwell.train.rundir import finish_run
from trainwell.train.signals import Interrupted, StopRequest
from trainwell.train.state import unwrap
from trainwell.train.step import StepOutput, apply_update, compute_update, skip_update


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
    with quiet() if progress is False else nullcontext():  # progress=False: nothing printed
        return _run(cfg, task, run_dir, progress, resume, extra_sinks)


def _run(cfg: RunConfig, task: Task | None, run_dir: str | Path | None, progress: bool | None, resume: bool,
         extra_sinks: Sequence[Sink]) -> RunResult:
    t_begin = time.perf_counter()
    f = build_flight(cfg, task, run_dir, progress, resume, extra_sinks)
    status = "failed"
    try:
        # SIGTERM/SIGINT: stop after the step (saved); one after the last step lets the final
        # evaluation and checkpoint finish, and the run ends as usual
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


# ---------------------------------------------------------------- the end


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
