"""A bad sample of a small dataset comes back every epoch: the autopilot skips its first
return in the spike test's first half window, quarantines it, and the run finishes (the
z-score alone let it into the window, and the run was halted for a false divergence)."""

from __future__ import annotations

import json

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwell


def test_a_recurring_corrupted_sample_is_quarantined_at_its_first_return(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(256, 1, generator=g)
    y[37] *= 1000  # a corrupted target: its batch's loss is ~1e5 x the others'
    res = trainwell.fit(nn.Linear(8, 1), TensorDataset(x, y), nn.functional.mse_loss,
                        {"train": {"steps": 200, "batch_size": 16}}, run_dir=tmp_path / "r", progress=False)
    assert res.steps == 200
    log = [json.loads(line) for line in (tmp_path / "r" / "logbook.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in log] == ["skip", "quarantine"]
    assert log[0]["step"] < 16  # its first return: the sampler's first epoch is 16 steps
    assert "robust spreads above the median" in log[0]["message"]
    assert "37" in log[1]["message"]
