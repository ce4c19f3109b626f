"""Broken (and healthy) tiny tasks on the digits images for the diagnosis tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from trainwell.config import RunConfig, load_config
from trainwell.data.arrays import load_digits_arrays
from trainwell.tasks.base import LossOutput, MetricSums, Task


def digits_arrays(scale: str = "standard") -> tuple[Tensor, Tensor]:
    """(N, 64) inputs, (N,) labels. 'standard': per-pixel standardised; 'unit': raw pixels in
    [0, 1] (not centred); 'x255': standardised then multiplied by 255 (not scaled)."""
    x, y = load_digits_arrays()
    x = torch.tensor(x, dtype=torch.float32).flatten(1)
    if scale == "unit":
        x = x / 16.0
    else:
        x = (x - x.mean(0)) / (x.std(0) + 1e-3)
        if scale == "x255":
            x = x * 255.0
    return x, torch.tensor(y, dtype=torch.long)


class ArrayTask(Task):
    """Cross-entropy classification of (x, y) rows with a model factory.

    labels: 'ok'; 'shuffled' (the loss pairs outputs with a random permutation of the
    labels at every call: it ignores which label belongs to which sample); 'zeros' (the loss
    scores every sample against class 0); 'detached' (the output is detached before the loss)."""

    name = "array"
    metric = "accuracy"
    higher_is_better = True

    def __init__(self, x: Tensor, y: Tensor, make_model: Callable[[], nn.Module], labels: str = "ok",
                 evaluation: str | None = None) -> None:
        self.x, self.y, self.make_model, self.labels = x, y, make_model, labels
        self.num_classes = int(y.max()) + 1
        self.evaluation = None
        if evaluation == "split":  # the last tenth held out for evaluation
            n = len(x) * 9 // 10
            self.x, self.y, self.evaluation = x[:n], y[:n], TensorDataset(x[n:], y[n:])

    def build_model(self) -> nn.Module:
        return self.make_model()

    def train_data(self) -> Dataset:
        return TensorDataset(self.x, self.y)

    def eval_data(self) -> Dataset | None:
        return self.evaluation

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch
        logits = model(x)
        if self.labels == "detached":
            logits = logits.detach()
        if self.labels == "shuffled":
            y = y[torch.randperm(len(y))]
        elif self.labels == "zeros":
            y = torch.zeros_like(y)
        ps = F.cross_entropy(logits, y, reduction="none")
        return LossOutput(ps.sum(), float(len(y)), {}, ps)

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        x, y = batch
        logits = model(x)
        n = torch.tensor(float(len(y)))
        return {"accuracy": ((logits.argmax(-1) == y).sum().float(), n),
                "loss": (F.cross_entropy(logits, y, reduction="sum"), n)}


def mlp(depth: int = 2, width: int = 64, act: type[nn.Module] = nn.ReLU, d_in: int = 64, classes: int = 10,
        init_std: float | None = None, bias: float | None = None, batchnorm: bool = False) -> nn.Sequential:
    """A plain MLP; ``init_std`` draws weights N(0, std); ``bias`` fills the hidden biases."""
    layers: list[nn.Module] = []
    fan_in = d_in
    for _ in range(depth):
        lin = nn.Linear(fan_in, width)
        if init_std is not None:
            nn.init.normal_(lin.weight, 0.0, init_std)
        if bias is not None:
            nn.init.constant_(lin.bias, bias)
        layers += [lin, *([nn.BatchNorm1d(width)] if batchnorm else []), act()]
        fan_in = width
    layers.append(nn.Linear(fan_in, classes))
    return nn.Sequential(*layers)


class AlwaysTrainBN(nn.Sequential):
    """A BatchNorm model that ignores eval(): it stays in training mode, so evaluation
    updates the running statistics and normalises with batch statistics."""

    def train(self, mode: bool = True) -> AlwaysTrainBN:
        return super().train(True)


def config(**sets: Any) -> RunConfig:
    """A run config for an ArrayTask: digits-like defaults plus dotted overrides."""
    base = {"task": {"name": "array"}, "train": {"batch_size": 64, "steps": 400},
            "optim": {"lr": 3e-3}, "schedule": {"warmup_steps": 20}}
    overrides = [f"{k.replace('__', '.')}={v}" for k, v in sets.items()]
    return load_config(base=base, overrides=overrides, check_task=False)
