"""A run's parts, built once from its RunConfig: the training state, the autopilot and its
interventions, the checkpointer, the instruments, the sinks and the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainwell import drills
from trainwell.config import RunConfig
from trainwell.data.source import build_loader, loader_batch_size
from trainwell.dist import DistContext
from trainwell.dist import setup as setup_distributed
from trainwell.errors import ConfigError
from trainwell.guards.autopilot import Autopilot
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
from trainwell.train.interventions import Interventions
from trainwell.train.metrics import Rate
from trainwell.train.precision import resolve_precision
from trainwell.train.probe import FinalActivationProbe
from trainwell.train.rng import seed_everything
from trainwell.train.rundir import make_run_dir, resume_run, start_run
from trainwell.train.state import TrainState, unwrap


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


def build_state(cfg: RunConfig, task: Task, device: torch.device, dist: DistContext | None = None,
                train_data: Any = None) -> TrainState:
    """The model, optimizer, schedule, loader and EMA of a run; ``train_data``: the task's,
    when the caller has it already."""
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
    data = task.train_data() if train_data is None else train_data
    loader = build_loader(data, task.collate, device, batch_size=cfg.train.batch_size,
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


def build_flight(cfg: RunConfig, task: Task | None, run_dir: str | Path | None, progress: bool | None, resume: bool,
                 extra_sinks: Sequence[Sink]) -> Flight:
    dist = setup_distributed(cfg)  # None: a single process (no collective anywhere)
    main = dist is None or dist.main  # rank 0 writes the run dir; other ranks only their failures
    seed_everything(cfg.seed)  # the same on every rank: identical initial replicas
    device = resolve_device(cfg.train.device) if dist is None else dist.device
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = task if task is not None else build_task(cfg)
    train_data = task.train_data()
    cfg = loader_batch_size(cfg, train_data)  # a DataLoader's batch size is the run's (or a ConfigError)
    st = build_state(cfg, task, device, dist, train_data)
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
    return Flight(cfg, task, st, out_dir, main, pilot, ckpt, Interventions(cfg.guards, st, pilot, ckpt, bar.log, task),
                  bar, sinks, rate, probe, runner, task.eval_data(), resumed_from)


def _dist():  # noqa: ANN202
    """trainwell.dist's run-directory and checkpoint helpers, imported only by
    multi-process runs."""
    from trainwell.dist import runtime

    return runtime
