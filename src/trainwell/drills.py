"""Fault drills: the ``[faults]`` section, its pure helpers, and the wrappers that inject
known faults around the loader, the task's loss and the schedule, to prove the autopilot.

A stability feature that has never seen a fault is a claim, not a feature. The drills stay
outside the step and the guards: ``arm`` wraps the run's loader (poisoned batches, the
kill), its task (NaN losses, fp16 overflows) and its schedule (LR bursts), and the step
reads like any other. Iterations are numbered as ``StepRecord.iteration`` (1 = the first
batch drawn). Defaults: no faults at all.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import Tensor

from trainwell.section import Section
from trainwell.tasks.base import LABEL_KEYS

if TYPE_CHECKING:
    from trainwell.tasks.base import LossOutput, Task
    from trainwell.train.state import TrainState


class FaultsConfig(Section):
    nan_batch_at: list[int] = Field(default_factory=list)
    """Iterations whose batch gets NaN in its floating-point inputs (rows: poison_rows). Integer inputs (token ids) cannot hold NaN and are left alone."""
    scale_batch_at: list[int] = Field(default_factory=list)
    """Iterations whose batch has its floating-point inputs multiplied by scale_factor (rows: poison_rows)."""
    scale_factor: float = 1e4
    """Multiplier of scale_batch_at: 1e4 makes a loss spike that the 6-sigma test must catch."""
    poison_rows: list[int] = Field(default_factory=list)
    """Positions in the batch (0-based) that nan_batch_at / scale_batch_at poison, and whose own losses nan_loss_at makes NaN (when the task reports per-sample losses); empty = every sample. A few rows let quarantine show it finds exactly the culprits."""
    corrupt_labels: list[int] = Field(default_factory=list)
    """Sample ids whose labels are replaced by a wrong class / token every time they are drawn."""
    lr_burst_at: int | None = None
    """Iteration from which the learning rate is multiplied by lr_burst_factor (unset = no burst): a divergence that only a rollback can undo."""
    lr_burst_factor: float = Field(100.0, gt=0.0)
    """LR multiplier of the burst. 100x pushes any tuned run well past its stability edge."""
    lr_burst_steps: int = Field(1, ge=1)
    """Iterations the burst lasts."""
    nan_loss_at: list[int] = Field(default_factory=list)
    """Iterations whose loss is made NaN (as a numerical blow-up in the forward would); works for every task, token inputs included."""
    fp16_overflow_at: list[int] = Field(default_factory=list)
    """Iterations at which the fp16 grad scaler is made to see an overflow (as if the gradients held inf)."""
    rank: int | None = Field(None, ge=0)
    """Under torchrun: the one rank whose data the batch faults hit (nan_batch_at, scale_batch_at, corrupt_labels, nan_loss_at), to prove that all ranks act in unison; unset = every rank."""
    kill_at: int | None = Field(None, ge=1)
    """Iteration at which the process (under torchrun: the process of ``rank``, or rank 0) kills itself with SIGKILL, as a crash or the out-of-memory killer would; only on the first attempt (not after a resume from a checkpoint, nor with TORCHELASTIC_RESTART_COUNT > 0), so that a resume or an elastic restart can finish the run."""

    @property
    def any(self) -> bool:
        return bool(
            self.nan_batch_at
            or self.scale_batch_at
            or self.corrupt_labels
            or self.lr_burst_at is not None
            or self.fp16_overflow_at
            or self.nan_loss_at
            or self.kill_at is not None
        )


def lr_factor(cfg: FaultsConfig, iteration: int) -> float:
    """The LR multiplier the fault plan asks for at this iteration (1.0 = none)."""
    if (
        cfg.lr_burst_at is not None
        and cfg.lr_burst_at <= iteration < cfg.lr_burst_at + cfg.lr_burst_steps
    ):
        return cfg.lr_burst_factor
    return 1.0


def nan_loss(cfg: FaultsConfig, iteration: int, rank: int = 0) -> bool:
    """Whether this iteration's loss must come out NaN (on this rank)."""
    return iteration in cfg.nan_loss_at and _hits(cfg, rank)


def kill_if_due(cfg: FaultsConfig, iteration: int, rank: int = 0, resumed: bool = False) -> None:
    """SIGKILL this process at ``kill_at`` on the first attempt (no chance to clean up): not
    in a run that resumed from a checkpoint (``resumed``; the run directory's config keeps
    the fault, and ``trainwell resume`` would otherwise die at the same place again) nor
    after an elastic restart."""
    first_attempt = not resumed and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") in ("", "0")
    if cfg.kill_at == iteration and rank == (cfg.rank or 0) and first_attempt:
        os.kill(os.getpid(), signal.SIGKILL)


def _hits(cfg: FaultsConfig, rank: int) -> bool:
    return cfg.rank is None or cfg.rank == rank


def force_overflow(cfg: FaultsConfig, iteration: int) -> bool:
    """Whether the fp16 scaler must see an overflow at this iteration."""
    return iteration in cfg.fp16_overflow_at


def apply_to_batch(cfg: FaultsConfig, iteration: int, batch: Any, idx: Tensor, rank: int = 0) -> Any:
    """The batch with this iteration's faults applied; the input batch is never modified.

    Dict batches: labels are under 'y' or 'targets', every other floating tensor is an
    input. Tuple/list batches: position 1 is the label, the others are inputs. Tensors'
    first dimension is the batch (B, ...); ``idx`` (B,) holds the sample ids.
    """
    if not _hits(cfg, rank):
        return batch
    nan = iteration in cfg.nan_batch_at
    scale = iteration in cfg.scale_batch_at
    ids = idx.detach().reshape(-1).cpu().tolist()
    corrupt = [r for r, i in enumerate(ids) if i in set(cfg.corrupt_labels)]
    if not (nan or scale or corrupt):
        return batch
    rows = (
        [r for r in cfg.poison_rows if r < len(ids)] if cfg.poison_rows else list(range(len(ids)))
    )

    def inputs(x: Any) -> Any:
        if not (isinstance(x, Tensor) and x.is_floating_point() and (nan or scale)):
            return x
        x = x.clone()
        if scale:
            x[rows] = x[rows] * cfg.scale_factor
        if nan:
            x[rows] = float("nan")
        return x

    def labels(y: Any) -> Any:
        return _corrupt(y, corrupt) if isinstance(y, Tensor) and corrupt else y

    if isinstance(batch, dict):
        return {k: labels(v) if k in LABEL_KEYS else inputs(v) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        out = [labels(v) if i == 1 else inputs(v) for i, v in enumerate(batch)]
        return type(batch)(*out) if hasattr(batch, "_fields") else type(batch)(out)  # namedtuple
    return inputs(batch)


def _corrupt(y: Tensor, rows: list[int]) -> Tensor:
    """Labels of ``rows`` replaced by a wrong value: for class / token ids, the next class
    present in the batch (cyclically), which is a valid id by construction; ignored
    targets (< 0, e.g. -100) stay ignored. Float targets move by 10 x (their spread + 1)."""
    y = y.clone()
    if y.is_floating_point():
        y[rows] = y[rows] + 10.0 * (y.std().nan_to_num(0.0) + 1.0)
        return y
    classes = torch.unique(y[y >= 0])  # sorted
    if classes.numel() == 0:
        return y
    sub = y[rows]
    pos = torch.searchsorted(classes, sub.clamp(min=0))
    wrong = classes[(pos + 1) % classes.numel()]
    if classes.numel() == 1:  # only one class in sight: step off it and stay >= 0
        wrong = torch.where(sub > 0, sub - 1, sub + 1)
    y[rows] = torch.where(sub >= 0, wrong, sub)
    return y


# ---------------------------------------------------------------- the wrappers


def arm(cfg: FaultsConfig, st: TrainState, task: Task, rank: int = 0, *, resumed: bool = False) -> Task:
    """Put the fault plan around ``st``'s loader and schedule; returns the task wrapped
    (NaN losses, fp16 overflows). Nothing changes when the plan is empty."""
    if not cfg.any:
        return task
    iteration = lambda: st.iteration + 1  # noqa: E731 - the iteration being computed
    st.loader = DrillLoader(st.loader, cfg, iteration, rank, resumed)
    base = st.schedule
    st.schedule = lambda step: base(step) * lr_factor(cfg, iteration())
    return DrillTask(task, cfg, iteration, rank)


class DrillLoader:
    """The run's loader, serving each batch with this iteration's faults applied (and
    killing the process at ``kill_at``); everything else is the loader's own."""

    def __init__(self, loader: Any, cfg: FaultsConfig, iteration: Callable[[], int], rank: int,
                 resumed: bool) -> None:
        self.loader, self.cfg, self.iteration, self.rank, self.resumed = loader, cfg, iteration, rank, resumed

    def next(self) -> list[tuple[Tensor, Any]]:
        it = self.iteration()
        micro = self.loader.next()
        kill_if_due(self.cfg, it, self.rank, resumed=self.resumed)
        return [(idx, apply_to_batch(self.cfg, it, batch, idx, self.rank)) for idx, batch in micro]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class DrillTask:
    """The task, whose training loss comes out NaN (``nan_loss_at``) or sends an infinite
    gradient back (``fp16_overflow_at``) at the planned iterations; evaluation is untouched."""

    def __init__(self, task: Task, cfg: FaultsConfig, iteration: Callable[[], int], rank: int) -> None:
        self.task, self.cfg, self.iteration, self.rank = task, cfg, iteration, rank

    def loss(self, model: torch.nn.Module, batch: Any) -> LossOutput:
        out = self.task.loss(model, batch)
        it = self.iteration()
        if model.training and nan_loss(self.cfg, it, self.rank):  # a numerical blow-up in the forward
            out = _nan_loss(out, self.cfg.poison_rows)
        if model.training and force_overflow(self.cfg, it):  # as if the scaled gradient overflowed
            out = replace(out, sum=_InfGradient.apply(out.sum))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


def _nan_loss(out: LossOutput, rows: list[int]) -> LossOutput:
    """The loss NaN. With ``rows`` and per-sample losses, the blow-up is those samples' own
    (their per-sample losses NaN, the others' finite: quarantine can find them); else the
    whole batch's."""
    nan = float("nan")
    if not rows or out.per_sample is None:
        return replace(out, sum=out.sum * nan)
    per_sample = out.per_sample.clone()
    per_sample[[r for r in rows if r < len(per_sample)]] = nan
    return replace(out, sum=out.sum * nan, per_sample=per_sample)


class _InfGradient(torch.autograd.Function):
    """Identity forward; an infinite gradient backward (the fp16 overflow drill)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return torch.full_like(grad, float("inf"))
