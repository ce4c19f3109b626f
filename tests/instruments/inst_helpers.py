"""Tiny tasks, models and brute-force references shared by the instrument tests."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainwell.instruments import InstrumentRunner, InstrumentsConfig
from trainwell.tasks.base import LossOutput, Task


class ClsTask(Task):
    """Cross-entropy on (x, y); ``per_sample=False`` hides LossOutput.per_sample."""

    def __init__(self, per_sample: bool = True) -> None:
        self.per_sample = per_sample

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch
        ps = F.cross_entropy(model(x), y, reduction="none")  # (B,)
        count = torch.tensor(float(len(y)))
        return LossOutput(ps.sum(), count, {}, ps if self.per_sample else None)


class DictTask(Task):
    """The same loss with a dict batch and a non-batched entry (a constant temperature)."""

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        logits = model(batch["x"]) / batch["temperature"]
        ps = F.cross_entropy(logits, batch["y"], reduction="none")
        return LossOutput(ps.sum(), torch.tensor(float(len(ps))), {}, ps)


class RegTask(Task):
    """Mean squared error: exactly quadratic in the parameters of a linear model."""

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch
        ps = (model(x) - y).square().sum(-1)  # (B,)
        return LossOutput(ps.sum(), torch.tensor(float(len(ps))), {}, ps)


def mlp(seed: int = 0, d_in: int = 6, width: int = 8, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d_in, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.Tanh(),
        nn.Linear(width, classes),
    )


def cls_batch(seed: int = 1, n: int = 12, d_in: int = 6, classes: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g), torch.randint(0, classes, (n,), generator=g)


def brute_per_sample(
    model: nn.Module, task: Task, batch: tuple[Tensor, Tensor]
) -> list[dict[str, Tensor]]:
    """Per-sample gradients by a Python loop over samples (the reference)."""
    x, y = batch
    out = []
    for i in range(len(y)):
        model.zero_grad()
        lo = task.loss(model, (x[i : i + 1], y[i : i + 1]))
        (lo.sum / lo.count).backward()
        out.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    model.zero_grad()
    return out


def flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def runner_for(model: nn.Module, task: Task, capture: bool = True, **cfg: Any) -> InstrumentRunner:
    cfg.setdefault("every", 1)
    return InstrumentRunner(model, task, InstrumentsConfig(**cfg), strict=True, capture=capture)


def train_step(
    model: nn.Module,
    task: Task,
    batch: Any,
    opt: torch.optim.Optimizer,
    runner: InstrumentRunner | None,
    step: int,
) -> dict[str, float]:
    """One plain update with the runner's call sites, as the loop makes them."""
    opt.zero_grad()
    out = task.loss(model, batch)
    loss = out.sum / out.count
    loss.backward()
    if runner is not None:
        runner.before_update(step, batch, float(loss.detach()), opt.param_groups[0]["lr"])
    opt.step()
    return runner.after_update(step) if runner is not None else {}


def captured_step(
    model: nn.Module,
    task: Task,
    micro: list[Any],
    opt: torch.optim.Optimizer,
    runner: InstrumentRunner,
    step: int,
) -> dict[str, float]:
    """One update over micro-batches with every call site of train/step.py, so that the
    runner may take per-sample gradients and activations from this backward."""
    opt.zero_grad()
    due = runner.due(step)
    if due:
        runner.begin(step)
    k = len(micro)
    norm_ref = None
    sums, counts = [], []
    for batch in micro:
        out = task.loss(model, batch)
        c = float(out.count)
        norm_ref = norm_ref if norm_ref is not None else c * k
        (out.sum / norm_ref).backward()
        if due:
            runner.after_micro_backward(step, c, 1.0 / norm_ref, len(batch[0]), out.per_sample)
        sums.append(float(out.sum.detach()))
        counts.append(c)
    total = sum(counts)
    for p in model.parameters():
        if p.grad is not None:
            p.grad.mul_(norm_ref / total)
    if due:
        runner.before_update(step, micro[0], sum(sums) / total, opt.param_groups[0]["lr"])
    opt.step()
    return runner.after_update(step) if due else {}
