"""The CLI's user tasks may return a DataLoader as their training and evaluation data: it
trains, evaluates and resumes exactly through `trainwell resume`."""

from __future__ import annotations

import sys

from fit_helpers import cut_back, numbers

from trainwell.cli.main import main

TASK = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
import trainwell


class Rows(Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 5, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Sign(trainwell.Task):
    name = "sign"

    def build_model(self):
        return nn.Linear(5, 2)

    def train_data(self):
        return DataLoader(Rows(200), batch_size=20, shuffle=True)

    def eval_data(self):
        return DataLoader(Rows(60), batch_size=25)

    def loss(self, model, batch):
        x, y = batch
        per = nn.functional.cross_entropy(model(x), y, reduction="none")
        return trainwell.LossOutput(sum=per.sum(), count=float(len(y)), per_sample=per)


def make_task():
    return Sign()
'''


def test_a_user_task_returning_a_dataloader_trains_and_resumes_exactly(tmp_path, monkeypatch):
    (tmp_path / "loader_task.py").write_text(TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("loader_task", None)
    args = ["--set", "task.name=loader_task:make_task", "--set", "train.steps=30", "--set", "train.threads=1",
            "--set", "log.every=1", "--set", "log.tensorboard=false", "--set", "checkpoint.every_steps=7",
            "--set", "checkpoint.keep_last=10",
            "--progress", "off"]
    assert main(["train", *args, "--run-dir", str(tmp_path / "whole")]) == 0
    rows = numbers(tmp_path / "whole")
    assert [r["step"] for r in rows if "eval/loss" in r] == [6, 12, 18, 24, 30]  # eval_every fitted to 30 steps
    cut_back(tmp_path / "whole", tmp_path / "resumed", 14)
    assert main(["resume", str(tmp_path / "resumed"), "--progress", "off"]) == 0
    assert numbers(tmp_path / "resumed") == rows


