"""Evaluation: the task's metrics over the validation split, in a fixed order."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset

from trainwell.data.loader import to_device
from trainwell.data.source import eval_batches
from trainwell.tasks.base import Task
from trainwell.train.ema import ema_weights
from trainwell.train.precision import Precision

if TYPE_CHECKING:
    from trainwell.train.config import TrainConfig
    from trainwell.train.state import TrainState


@torch.no_grad()
def evaluate(
    task: Task,
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    max_batches: int,
    device: torch.device,
    precision: Precision,
) -> dict[str, float]:
    """sum/count of every metric over the split (or its first ``max_batches`` batches, the
    same ones at every evaluation). Returns plain floats: one host sync per evaluation."""
    was_training = model.training
    model.eval()  # BatchNorm uses running statistics, dropout is off
    sums: dict[str, list[torch.Tensor]] = {}
    try:
        for batch in eval_batches(dataset, task.collate, batch_size=batch_size, max_batches=max_batches):
            batch = to_device(batch, device)
            with precision.autocast():
                metrics = task.metrics(model, batch)
            for name, (total, count) in metrics.items():
                acc = sums.setdefault(name, [torch.zeros((), dtype=torch.float64, device=device)] * 2)
                acc[0] = acc[0] + total.detach().double()
                acc[1] = acc[1] + torch.as_tensor(count, device=device).double()
    finally:
        model.train(was_training)
    if not sums:
        return {}
    names = list(sums)
    values = torch.stack([sums[k][0] / sums[k][1] for k in names]).tolist()
    return dict(zip(names, values, strict=True))


def evaluate_all(cfg: TrainConfig, task: Task, st: TrainState, eval_data: Any) -> dict[str, float]:
    """The loop's evaluation: eval/* (and eval_ema/* with an EMA) at the current weights,
    with an optimizer that keeps separate evaluation weights (schedule-free) swapped in."""
    kwargs = dict(
        batch_size=cfg.eval_batch_size or cfg.batch_size,
        max_batches=cfg.eval_batches,
        device=st.device,
        precision=st.precision,
    )
    swap = hasattr(st.optimizer, "eval") and hasattr(st.optimizer, "train")
    t0 = time.perf_counter()
    if swap:
        st.optimizer.eval()  # schedule-free optimizers evaluate at their averaged point
    swap_s = time.perf_counter() - t0
    try:
        results = {f"eval/{k}": v for k, v in evaluate(task, st.model, eval_data, **kwargs).items()}
    finally:
        t1 = time.perf_counter()
        if swap:
            st.optimizer.train()
        swap_s += time.perf_counter() - t1
    if swap:  # the swap is the optimizer's work: AlgoPerf counts it as training time
        results["sys/eval_swap_s"] = swap_s
    if st.ema is not None:  # a sharded EMA is swapped into the model on every rank alike
        with ema_weights(st.ema, st.model) as model:
            ema = evaluate(task, model, eval_data, **kwargs)
        results.update({f"eval_ema/{k}": v for k, v in ema.items()})
    return results
