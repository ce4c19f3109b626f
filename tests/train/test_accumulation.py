"""Gradient accumulation equals the full batch: loss normalised by the total number of
targets across micro-batches, not a mean of means (the HF 2024 accumulation bug)."""

from __future__ import annotations

import time

import torch
from torch import nn

from trainwell.data.loader import BatchLoader
from trainwell.data.sampler import ResumableSampler
from trainwell.tasks.base import LossOutput, Task
from trainwell.train.precision import resolve_precision
from trainwell.train.state import TrainState
from trainwell.train.step import compute_update

PAD = -100


class PaddedLM(Task):
    """Sequences with very different amounts of padding: target counts differ per sample."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 11, (10, 6), generator=g)
        self.y = torch.randint(0, 11, (10, 6), generator=g)
        lengths = torch.tensor([6, 1, 2, 6, 3, 5, 1, 4, 6, 2])
        self.y[torch.arange(6)[None, :] >= lengths[:, None]] = PAD

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Embedding(11, 8), nn.Tanh(), nn.Linear(8, 11))

    def train_data(self):
        return self

    def __len__(self) -> int:
        return 10

    def get_batch(self, idx):
        return self.x[idx], self.y[idx]

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)  # (B, T, V)
        ce = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=PAD, reduction="sum")
        return LossOutput(sum=ce, count=(y != PAD).sum())


def grads_after_update(task: PaddedLM, accumulate: int):
    model = task.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = BatchLoader(task, ResumableSampler(10, seed=0, shuffle=False), list, torch.device("cpu"), 10, accumulate)
    st = TrainState(model, opt, lambda s: 1.0, 0.1, resolve_precision("fp32", torch.device("cpu")), loader, torch.device("cpu"))
    record, _ = compute_update(st, task, loader.next(), max_norm=0.0, probe=None, data_time=0.0, t_start=time.perf_counter())
    return record, [p.grad.clone() for p in model.parameters()]


def test_accumulated_gradient_equals_full_batch_with_unequal_micro_batches():
    task = PaddedLM()
    full_record, full = grads_after_update(task, 1)
    for k in (2, 3, 4):
        record, acc = grads_after_update(task, k)
        for a, b in zip(acc, full, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert abs(record.loss - full_record.loss) < 1e-6
        assert record.n_targets == full_record.n_targets == int((task.y != PAD).sum())


def test_mean_of_means_would_differ():
    """Guard against a test that cannot fail: with this padding, averaging per-micro-batch
    means gives a visibly different gradient."""
    task = PaddedLM()
    _, full = grads_after_update(task, 1)
    model = task.build_model()
    for part in torch.split(torch.arange(10), [4, 3, 3]):
        out = task.loss(model, task.get_batch(part))
        (out.sum / out.count / 3).backward()
    diff = max((p.grad - f).abs().max().item() for p, f in zip(model.parameters(), full, strict=True))
    assert diff > 1e-3
