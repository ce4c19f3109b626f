"""fit's loss function returns a mean, so its steps report no per-sample losses; when the
autopilot refuses an update, the task scores that update's samples again one by one
(``FunctionTask.sample_losses``) so that the sample behind a loss spike is quarantined, as
with a built-in task. A task that cannot tell its samples apart says so once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import trainwell
from trainwell.api import FunctionTask


def regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    return x, x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)


@pytest.mark.parametrize("form", ["pair", "model"])
def test_sample_losses_are_the_loss_of_each_sample(form: str) -> None:
    x, y = regression()
    model = nn.Linear(8, 1)
    loss_fn = F.mse_loss if form == "pair" else (lambda model, batch: F.mse_loss(model(batch[0]), batch[1]))
    got = FunctionTask(model, TensorDataset(x, y), loss_fn).sample_losses(model, (x[:16], y[:16]))
    expected = F.mse_loss(model(x[:16]), y[:16], reduction="none").squeeze(1)
    assert torch.allclose(got, expected.detach(), rtol=1e-6, atol=1e-7)


def test_a_model_that_needs_a_batch_cannot_name_its_samples() -> None:
    x, y = regression()
    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).train()
    task = FunctionTask(model, TensorDataset(x, y), lambda model, batch: F.mse_loss(model(batch[0]), batch[1]))
    assert task.sample_losses(model, (x[:16], y[:16])) is None


def test_fit_quarantines_the_sample_behind_a_loss_spike(tmp_path: Path) -> None:
    """Sample 77's target is corrupted each time it is drawn (the drill): its first draw
    after the spike test's warm-up is skipped and it alone is quarantined; the run goes on."""
    x, y = regression()
    torch.manual_seed(0)
    config = {"train": {"steps": 300, "batch_size": 32}, "optim": {"lr": 0.05}, "log": {"tensorboard": False},
              "guards": {"spike_robust": True}, "faults": {"corrupt_labels": [77]}}
    result = trainwell.fit(nn.Linear(8, 1), TensorDataset(x, y), F.mse_loss, config, run_dir=tmp_path / "run",
                           progress=False)
    events = [json.loads(line) for line in (result.run_dir / "logbook.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["skip", "quarantine"]
    assert events[1]["sample_ids"] == [77] and events[0]["iteration"] == events[1]["iteration"]
    assert result.steps == 300 and result.metrics["train/loss"] < 0.1
