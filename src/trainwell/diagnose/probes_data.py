"""Probes of the data: do labels go with their inputs (does learning carry to unseen samples?),
what the model outputs and the targets look like at init, and the evaluation split against
training's (shared samples, other input statistics).

Like probes.py: a fresh model or the caller's snapshot-restored one, batches drawn with a
private generator, numbers back as plain floats in small dataclasses for rules_data.py.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from trainwell.data.draw import cut, draw_samples
from trainwell.data.source import eval_batches
from trainwell.tasks.base import LABEL_KEYS, Task

HOLDOUT_SAMPLES = 128
"""Samples trained on (and as many held out) by the label probe: enough that memorising them
takes many steps of a small model, few enough for ~60 quick steps."""

HOLDOUT_STEPS = 60
"""Adam steps of the label probe on mini-batches of HOLDOUT_BATCH: 15 passes over the seen
samples, where a model learning real labels (digits MLP, CNN, transformer measured here) has
already lowered the loss of unseen samples by 40% or more."""

HOLDOUT_BATCH = 32

HOLDOUT_CHECK = 10
"""Steps between the label probe's looks at the unseen samples' loss."""

HOLDOUT_LR = 1e-3
"""Adam's default (as the overfit probe): the probe asks whether what is learned carries over,
not how fast."""

SPLIT_SAMPLES = 20_000
"""At most this many samples of each split are hashed for the shared-sample check."""


# ---------------------------------------------------------------- drawing samples


def rows(batch: Any, idx: Tensor, n: int) -> Any:
    """The samples ``idx`` of a collated batch of ``n`` samples (tensors whose leading
    dimension is ``n`` are indexed; anything else is kept)."""
    return tree_map(lambda t: t[idx] if isinstance(t, Tensor) and t.ndim and t.shape[0] == n else t, batch)


def draw_disjoint(task: Task, data: Any, n: int, seed: int, device: torch.device) -> tuple[Any, Any, int]:
    """Two disjoint batches of up to ``n`` samples each, and how many each holds: ``2n``
    samples drawn at once (data/draw.py: distinct ones from a dataset, a stream's next ones)
    and cut in two."""
    batch, drawn = draw_samples(data, task.collate, 2 * n, seed, device)
    half = drawn // 2
    seen, unseen, _ = cut(batch, [half, half, drawn - 2 * half])
    return seen, unseen, half


# ---------------------------------------------------------------- labels against inputs


@dataclass(frozen=True)
class HoldoutResult:
    """A fresh model trained on ``samples`` training samples; its loss on them and on as
    many unseen training samples, before and after."""

    samples: int
    steps: int
    seen_before: float
    seen_after: float
    unseen_before: float
    unseen_after: float
    unseen_best: float = math.nan
    """The unseen samples' lowest loss at any of the probe's checks (every HOLDOUT_CHECK steps):
    with real labels it dips even where longer training on few samples overfits."""
    seen_accuracy: float | None = None
    unseen_accuracy: float | None = None

    @property
    def seen_drop(self) -> float:
        """Fraction of the seen samples' loss removed by training."""
        return _drop(self.seen_before, self.seen_after)

    @property
    def unseen_drop(self) -> float:
        """Fraction of the unseen samples' loss removed at best (negative: it only rose)."""
        return _drop(self.unseen_before, min(self.unseen_after, self.unseen_best))


def _drop(before: float, after: float) -> float:
    if not (math.isfinite(before) and math.isfinite(after)) or before <= 0:
        return math.nan
    return (before - after) / before


def holdout_probe(task: Task, model: nn.Module, seen: Any, unseen: Any, n: int,
                  steps: int = HOLDOUT_STEPS) -> HoldoutResult:
    """Train ``model`` (a fresh one) with Adam on mini-batches of ``seen`` (``n`` samples) and
    measure the mean loss of ``seen`` and ``unseen`` before and after. Real labels: both fall.
    Labels that do not go with their inputs: the seen loss falls (memorised), the unseen does not."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=HOLDOUT_LR)
    seen_before, unseen_before = _mean_loss(task, model, seen), _mean_loss(task, model, unseen)
    order = torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=order)
    batch = min(HOLDOUT_BATCH, n)
    model.train()
    unseen_best = unseen_before
    for step in range(steps):
        if step and step % HOLDOUT_CHECK == 0:
            unseen_best = min(unseen_best, _mean_loss(task, model, unseen))
        start = (step * batch) % n
        if start + batch > n:
            perm, start = torch.randperm(n, generator=order), 0
        out = task.loss(model, rows(seen, perm[start:start + batch], n))
        loss = out.sum.float() / float(out.count)
        if not loss.requires_grad or not torch.isfinite(loss):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # as the overfit probe: one bad step does not end it
        opt.step()
    unseen_after = _mean_loss(task, model, unseen)
    return HoldoutResult(n, steps, seen_before, _mean_loss(task, model, seen), unseen_before, unseen_after,
                         min(unseen_best, unseen_after), _accuracy(task, model, seen), _accuracy(task, model, unseen))


def _mean_loss(task: Task, model: nn.Module, batch: Any) -> float:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = task.loss(model, batch)
        return float(out.sum.float() / float(out.count))
    finally:
        model.train(was)


def _accuracy(task: Task, model: nn.Module, batch: Any) -> float | None:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            metrics = task.metrics(model, batch)
    finally:
        model.train(was)
    if "accuracy" not in metrics:
        return None
    total, count = metrics["accuracy"]
    return float(total) / float(count)


# ---------------------------------------------------------------- outputs and targets at init


@dataclass(frozen=True)
class OutputStats:
    """The model's output on a batch at init, and the batch's targets when it has them."""

    shape: list[int]
    minimum: float
    maximum: float
    rms: float
    row_sum_error: float
    """Largest |sum over the last dimension - 1|: near 0 when the rows are probabilities."""
    sample_spread: float
    """Largest standard deviation over the batch of any output element, over the output RMS:
    0 when every sample gets the same output (the input does not reach it)."""
    target_float: bool
    """The batch has floating-point targets with as many elements as the output (regression)."""
    target_rms: float = math.nan
    target_mean: float = math.nan
    target_std: float = math.nan

    @property
    def in_unit_interval(self) -> bool:
        return self.minimum >= 0.0 and self.maximum <= 1.0


def output_stats(model: nn.Module, task: Task, batch: Any) -> OutputStats | None:
    """One forward of ``batch`` through the task's loss with a hook on the model's output
    (no gradient, training mode restored). None when the output is not one float tensor."""
    seen: list[Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if not seen and isinstance(output, Tensor) and output.is_floating_point():
            seen.append(output.detach().float())

    handle = model.register_forward_hook(hook)
    try:
        with torch.no_grad():
            task.loss(model, batch)
    finally:
        handle.remove()
    if not seen or seen[0].ndim < 1 or seen[0].numel() == 0:
        return None
    y = seen[0]
    row_sum = (y.sum(-1) - 1.0).abs().max() if y.ndim >= 2 and y.shape[-1] >= 2 else torch.tensor(math.inf)
    target = _target(batch)
    regression = target is not None and target.is_floating_point() and target.numel() == y.numel()
    rms = float(y.square().mean().sqrt())
    spread = float(y.std(0).max()) / rms if y.shape[0] > 1 and rms > 0 else math.nan
    stats = dict(shape=list(y.shape), minimum=float(y.min()), maximum=float(y.max()), rms=rms,
                 row_sum_error=float(row_sum), sample_spread=spread, target_float=regression)
    if regression:
        t = target.detach().float()  # type: ignore[union-attr]
        stats.update(target_rms=float(t.square().mean().sqrt()), target_mean=float(t.mean()),
                     target_std=float(t.std()) if t.numel() > 1 else 0.0)
    return OutputStats(**stats)  # type: ignore[arg-type]


def _target(batch: Any) -> Tensor | None:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[-1], Tensor):
        return batch[-1]
    if isinstance(batch, dict):
        return next((batch[k] for k in LABEL_KEYS if isinstance(batch.get(k), Tensor)), None)
    return None


# ---------------------------------------------------------------- evaluation split


@dataclass(frozen=True)
class SplitCheck:
    """The evaluation split against the training split."""

    train_samples: int
    eval_samples: int
    shared: int
    """Evaluation samples whose input is identical (byte for byte) to a training sample's."""
    shift: float = math.nan
    """RMS over features of (eval mean - train mean), over the RMS of the training per-feature
    spread: 0 for splits drawn from one distribution, 1 when the means differ by a spread."""
    scale: float = math.nan
    """RMS of the evaluation per-feature spread over the training one's."""


def split_check(task: Task, train: Any, evaluation: Any, device: torch.device,
                limit: int = SPLIT_SAMPLES) -> SplitCheck | None:
    """None without evaluation data, or when neither split's inputs can be read as tensors."""
    if evaluation is None:
        return None
    train_x, eval_x = _inputs(task, train, limit), _inputs(task, evaluation, limit)
    if train_x is None or eval_x is None:
        return None
    hashes = {_digest(row) for row in train_x}
    shared = sum(1 for row in eval_x if _digest(row) in hashes)
    shift = scale = math.nan
    if train_x.is_floating_point() and train_x.shape[1:] == eval_x.shape[1:] and len(train_x) > 1 and len(eval_x) > 1:
        a, b = train_x.flatten(1).double(), eval_x.flatten(1).double()  # (N, D), (M, D)
        spread = a.std(0).square().mean().sqrt()
        if spread > 0:
            shift = float((b.mean(0) - a.mean(0)).square().mean().sqrt() / spread)
            scale = float(b.std(0).square().mean().sqrt() / spread)
    return SplitCheck(len(train_x), len(eval_x), shared, shift, scale)


def _inputs(task: Task, data: Any, limit: int) -> Tensor | None:
    """The first tensor of each of the first ``limit`` samples (the model's input), stacked:
    (N, ...) on the CPU. Read as the evaluation reads data (source.eval_batches): a dataset
    in order, a DataLoader or an iterable of batches as its batches come."""
    xs, have = [], 0
    for batch in eval_batches(data, task.collate, batch_size=limit, max_batches=0):
        x = _first_tensor(batch)
        if x is None or x.ndim < 1:
            return None
        xs.append(x.detach().cpu())
        have += len(x)
        if have >= limit:
            break
    return torch.cat(xs)[:limit] if xs else None


def _first_tensor(batch: Any) -> Tensor | None:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, dict):
        return next((v for k, v in batch.items() if k not in LABEL_KEYS and isinstance(v, Tensor)), None)
    return None


def _digest(row: Tensor) -> bytes:
    row = row.float() if row.dtype == torch.bfloat16 else row  # numpy has no bfloat16
    return hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()
