"""Workers: a process that takes the study's waiting slots one after another and runs each
as a trial, until none is left. ``--workers N`` starts N of them here, each with its share
of the CPU threads; torch is imported once per worker, not once per trial. Processes on
other machines join the same study through a shared storage and do the same."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from trainwell.tune.study import HEARTBEAT_S, Handle, effective_trials, load_handle
from trainwell.tune.trial import Outcome, elapsed, run_trial, suggest, trial_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def work(h: Handle, log: Path | None = None) -> int:
    """Run waiting slots until none is left; returns how many this process ran. Trial
    output goes to ``log`` (one file per worker in the study's workers/ folder)."""
    ran = 0
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    sink = open(log, "a", buffering=1) if log else None  # noqa: SIM115
    with contextlib.ExitStack() as stack:
        if sink is not None:
            stack.enter_context(sink)
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        while _any_waiting(h):
            trial = h.optuna.ask()
            if not _claim(h, trial):
                continue
            _run_one(h, trial)
            ran += 1
    return ran


def _any_waiting(h: Handle) -> bool:
    return any(t.state == TrialState.WAITING for t in effective_trials(h))


def _claim(h: Handle, trial: optuna.Trial) -> bool:
    """A trial asked of Optuna is ours when it popped a waiting slot that no live trial
    holds. Otherwise (two workers raced for the last slot, or two reclaimers enqueued one
    slot twice) it is a spare: closed at once and left out of the study's records."""
    slot = trial.user_attrs.get("slot")
    held = slot is not None and any(
        t.number < trial.number and t.user_attrs.get("slot") == slot and t.state != TrialState.WAITING
        and not t.user_attrs.get("superseded") and not t.user_attrs.get("spare")
        for t in h.optuna.get_trials(deepcopy=False))
    if slot is None or held:
        trial.set_user_attr("spare", True)
        h.optuna.tell(trial, state=TrialState.FAIL)
        return False
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("heartbeat", time.time())
    return True


def _run_one(h: Handle, trial: optuna.Trial) -> None:
    attrs = trial.user_attrs
    slot = attrs["slot"]
    run_dir = Path(attrs.get("resume_dir") or h.study_dir / "trials" / (f"{slot:04d}" if isinstance(slot, int) else str(slot)))
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    t0 = time.perf_counter()
    beat = _Heartbeat(h, trial)
    try:
        params = suggest(trial, h.study.searched)
        cfg = trial_config(h.study, params, int(attrs.get("seed", h.study.run.seed)))
        print(f"--- trial {slot}: {params} -> {run_dir}", flush=True)
        outcome = run_trial(h.study, trial, cfg, run_dir, h.metric, h.higher_is_better)
    except Exception as e:  # a bug in a user task, an unexpected error: the study goes on
        outcome = Outcome("failed", reason=f"{type(e).__name__}: {e}")
    finally:
        beat.stop()
    _tell(h, trial, outcome, elapsed(t0))


def _tell(h: Handle, trial: optuna.Trial, out: Outcome, duration: float) -> None:
    trial.set_user_attr("duration_s", duration)
    trial.set_user_attr("interventions", out.interventions)
    if out.steps is not None:
        trial.set_user_attr("steps", out.steps)
    if out.best_step is not None:
        trial.set_user_attr("best_step", out.best_step)
    if out.reason:
        trial.set_user_attr("reason", out.reason[:2000])
    if out.value is not None:
        trial.set_user_attr("last_value", out.value)
    if out.state == "complete":
        h.optuna.tell(trial, out.value)
    elif out.state == "pruned":
        h.optuna.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("outcome", out.state)
        h.optuna.tell(trial, state=TrialState.FAIL)
    print(f"--- trial {trial.user_attrs['slot']}: {out.state}"
          + (f" {out.value:.6g}" if out.value is not None else "") + (f" ({out.reason})" if out.reason else ""),
          flush=True)


class _Heartbeat:
    """Writes the trial's heartbeat every HEARTBEAT_S while it runs, so that processes on
    other machines can tell a slow trial from a dead one."""

    def __init__(self, h: Handle, trial: optuna.Trial) -> None:
        self._stop = threading.Event()
        storage, trial_id = h.optuna._storage, trial._trial_id

        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                with contextlib.suppress(Exception):
                    storage.set_trial_user_attr(trial_id, "heartbeat", time.time())

        self._thread = threading.Thread(target=beat, name="trainwell-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------- worker processes


def threads_per_worker(workers: int) -> int:
    """The CPU threads each of ``workers`` local workers may use: workers that oversubscribe
    the cores slow each other down many times over (a 3.7 ms step took 843 ms with two
    processes of 2 threads each on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def start_workers(study_dir: Path, storage_url: str | None, n: int, *, first: int = 0,
                  threads: int = 1) -> list[Any]:
    """Start ``n`` worker processes on the study, numbered from ``first``, with ``threads``
    CPU threads each (spawned: a clean interpreter each, whatever the caller has loaded)."""
    ctx = mp.get_context("spawn")
    procs = []
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the children read them before torch loads
    try:
        for i in range(first, first + n):
            p = ctx.Process(target=worker_main, args=(str(study_dir), storage_url, i, threads),
                            name=f"trainwell-tune-worker-{i}", daemon=False)
            p.start()
            procs.append(p)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return procs


def worker_main(study_dir: str, storage_url: str | None, index: int, threads: int) -> None:
    """A worker process: dies with its parent (a killed study leaves no orphan training),
    writes its trials' output to workers/worker-<index>.log."""
    _die_with_parent()
    import torch

    torch.set_num_threads(threads)
    log = Path(study_dir) / "workers" / f"worker-{index}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    work(_wait_for_study(Path(study_dir), storage_url))


def _wait_for_study(study_dir: Path, storage_url: str | None, timeout_s: float = 300.0) -> Handle:
    """Workers start while the study's own process is still making the study (their
    imports overlap its own): wait until the study holds its slots."""
    from trainwell.errors import ConfigError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            h = load_handle(study_dir, storage_url)
            if "planned" in h.optuna.user_attrs:
                return h
        except ConfigError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:  # the study exists but never got its slots
            raise ConfigError(f"{study_dir}: the study was not made within {timeout_s:g} s")
        time.sleep(0.1)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone
        os._exit(1)
