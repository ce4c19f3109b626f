"""What the verdict measures: the task's metric batch by batch, its bootstrap spread, CPU
latency, and per layer the quantisation error (SQNR) and the outliers of weights and inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.tasks.base import Task

BOOTSTRAP_DRAWS = 2000
"""Resamples of the evaluation batches: the spread's own error is then about 1.6 %
(1/sqrt(2 * 2000)), well below what a verdict reads from it."""
BOOTSTRAP_SEED = 0
"""Fixed: the same run dir always gets the same spread."""
LATENCY_REPEATS = 7
"""Timed forwards per model (after one warm-up), alternating fp32 and quantised so that a
machine that slows down mid-way slows both. The fastest is reported: on a shared CPU other
processes only ever add time, so the minimum is the estimate least moved by them (timeit's
advice)."""


@dataclass
class Evaluation:
    """The task's metrics over the evaluation batches, kept batch by batch."""

    sums: dict[str, list[float]]
    counts: dict[str, list[float]]

    def value(self, name: str) -> float:
        return sum(self.sums[name]) / sum(self.counts[name])

    @property
    def batches(self) -> int:
        return len(next(iter(self.sums.values()), []))


@torch.no_grad()
def evaluate_batches(task: Task, model: nn.Module, batches: list[Any]) -> Evaluation:
    """sum and count of every metric of each batch (fp32, CPU, eval mode)."""
    model.eval()
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[float]] = {}
    for batch in batches:
        for name, (total, count) in task.metrics(model, batch).items():
            sums.setdefault(name, []).append(float(total))
            counts.setdefault(name, []).append(float(count))
    return Evaluation(sums, counts)


def bootstrap_std(ev: Evaluation, name: str, draws: int = BOOTSTRAP_DRAWS) -> float:
    """Standard deviation of the metric when the evaluation batches are resampled with
    replacement (the evaluation's own noise: how much the number would move on another
    draw of as many batches)."""
    s = torch.tensor(ev.sums[name], dtype=torch.float64)
    c = torch.tensor(ev.counts[name], dtype=torch.float64)
    if len(s) < 2:
        return float("nan")
    gen = torch.Generator().manual_seed(BOOTSTRAP_SEED)
    idx = torch.randint(len(s), (draws, len(s)), generator=gen)  # (draws, batches)
    values = s[idx].sum(dim=1) / c[idx].sum(dim=1)  # (draws,)
    return float(values.std())


def paired_interval(quant: Evaluation, fp32: Evaluation, name: str,
                    draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """95 % bootstrap interval of (quantised - fp32) metric, both models resampled on the
    same batches (paired: the batches' own differences in difficulty cancel)."""
    sq, sf = (torch.tensor(e.sums[name], dtype=torch.float64) for e in (quant, fp32))
    c = torch.tensor(fp32.counts[name], dtype=torch.float64)
    if len(c) < 2:
        return float("nan"), float("nan")
    gen = torch.Generator().manual_seed(BOOTSTRAP_SEED)
    idx = torch.randint(len(c), (draws, len(c)), generator=gen)  # (draws, batches)
    diff = (sq[idx].sum(dim=1) - sf[idx].sum(dim=1)) / c[idx].sum(dim=1)  # (draws,)
    lo, hi = torch.quantile(diff, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


@torch.no_grad()
def latencies(models: dict[str, nn.Module], forward: Callable[[nn.Module], Any],
              repeats: int = LATENCY_REPEATS) -> dict[str, float]:
    """Seconds of one ``forward(model)`` per model (the fastest of ``repeats``), the models
    taking turns."""
    for m in models.values():
        m.eval()
        forward(m)  # warm-up: first-call allocations and lazy inits
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            forward(m)
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


# ---------------------------------------------------------------- per layer


def tail_stats(x: Tensor) -> tuple[float, float]:
    """(max|x| / std, kurtosis) as floats: the outlier instrument's two measures."""
    from trainwell.instruments.outliers import tail_stats as stats

    max_std, kurt = stats(x)
    return float(max_std), float(kurt)


def layer_inputs(model: nn.Module, names: list[str], run: Callable[[nn.Module], Any]) -> dict[str, Tensor]:
    """The input of each named layer during one ``run(model)`` (its first call)."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name in names:
        def keep(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            seen.setdefault(name, args[0].detach())

        handles.append(model.get_submodule(name).register_forward_pre_hook(keep))
    try:
        with torch.no_grad():
            run(model)
    finally:
        for h in handles:
            h.remove()
    return seen


def sqnr_db(reference: Tensor, approx: Tensor) -> float:
    """Signal-to-quantisation-noise ratio 20·log10(‖x‖/‖x − x̂‖) in dB (torchao's
    ``compute_error``; +inf when identical). 6 dB is one bit."""
    noise = (reference.float() - approx.float()).norm()
    if noise == 0:
        return math.inf
    return float(20 * torch.log10(reference.float().norm() / noise))


@torch.no_grad()
def layer_sqnr(fp32: nn.Module, quant: nn.Module, inputs: dict[str, Tensor]) -> dict[str, float]:
    """Per layer: SQNR of the quantised layer's output against the fp32 layer's, both fed
    the fp32 model's input to that layer (each layer's own error, not the sum of those
    before it)."""
    return {name: sqnr_db(fp32.get_submodule(name)(x), quant.get_submodule(name)(x))
            for name, x in inputs.items()}
