"""TrainState: everything needed to continue a run bit for bit, with named fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from trainwell.data.loader import BatchLoader, IterableLoader
from trainwell.train.ema import ShardedEMA
from trainwell.train.precision import Precision
from trainwell.train.rng import rng_state, set_rng_state


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    """factor(step) of the peak LR; a pure function of the applied-step count."""
    peak_lr: float
    precision: Precision
    loader: BatchLoader | IterableLoader
    device: torch.device
    ema: AveragedModel | ShardedEMA | None = None
    """The EMA of the weights (train/ema.py): sharded beside a sharded model."""
    step: int = 0
    """Applied optimizer updates."""
    iteration: int = 0
    """Batches drawn (applied + skipped updates)."""
    lr_mult: float = 1.0
    """Run-time LR multiplier (the autopilot lowers it on rollback); survives resume."""
    clip_mult: float = 1.0
    """Run-time clipping multiplier (the autopilot lowers it on rollback, as OPT did 1.0 -> 0.3)."""
    samples_seen: int = 0
    targets_seen: int = 0
    params: list[torch.Tensor] = field(default_factory=list)
    dist: Any = None
    """The DistContext (trainwell.dist) when several processes train together; None alone."""

    def __post_init__(self) -> None:
        if not self.params:
            self.params = [p for p in self.model.parameters() if p.requires_grad]

    def lr_factor(self) -> float:
        return self.schedule(self.step) * self.lr_mult

    def current_lr(self) -> float:
        return self.peak_lr * self.lr_factor()

    # ------------------------------------------------------------ checkpointing

    def state_dict(self, weights: bool = True) -> dict[str, Any]:
        """Checkpoint parts: name -> tensors and plain data only. ``weights=False`` leaves out
        the model, optimizer and EMA weights (an FSDP2 run saves those sharded,
        dist/sharded.py); the EMA's update count stays in the ``train`` part."""
        train: dict[str, Any] = {
            "step": self.step,
            "iteration": self.iteration,
            "lr_mult": self.lr_mult,
            "clip_mult": self.clip_mult,
            "samples_seen": self.samples_seen,
            "targets_seen": self.targets_seen,
            "loader": self.loader.state_dict(),
            "rng": rng_state(),
        }
        if self.precision.scaler is not None:
            train["scaler"] = self.precision.scaler.state_dict()
        parts: dict[str, Any] = {"train": train}
        if weights:
            parts["model"] = unwrap(self.model).state_dict()
            parts["optimizer"] = self.optimizer.state_dict()
        if self.ema is not None:
            if weights:
                parts["ema"] = self.ema.module.state_dict()
            train["ema_n_averaged"] = self.ema.n_averaged.clone()
        return parts

    def load_state_dict(self, parts: dict[str, Any]) -> None:
        if "model" in parts:  # absent when the weights were saved sharded
            unwrap(self.model).load_state_dict(parts["model"])
            self.optimizer.load_state_dict(parts["optimizer"])
        train = parts["train"]
        self.step, self.iteration = train["step"], train["iteration"]
        self.lr_mult, self.clip_mult = train["lr_mult"], train["clip_mult"]
        self.samples_seen, self.targets_seen = train["samples_seen"], train["targets_seen"]
        self.loader.load_state_dict(train["loader"])
        if self.precision.scaler is not None and "scaler" in train:
            self.precision.scaler.load_state_dict(train["scaler"])
        if self.ema is not None and "ema_n_averaged" in train:
            if "ema" in parts:  # absent when the EMA was saved sharded
                self.ema.module.load_state_dict(parts["ema"])
            self.ema.n_averaged.copy_(train["ema_n_averaged"])
        set_rng_state(train["rng"])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile and DistributedDataParallel wrappers."""
    from torch.nn.parallel import DistributedDataParallel

    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, DistributedDataParallel):
        inner = inner.module
    return getattr(inner, "_orig_mod", inner)
