"""A user task is distilled like a built-in one when its loss gives LossOutput.logits."""

from __future__ import annotations

import textwrap

import pytest

from trainwell.cli.main import main
from trainwell.config import load_config
from trainwell.sinks import read_jsonl
from trainwell.train.loop import run

SOURCE = '''
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from trainwell.tasks import LossOutput, Task

class Blobs(Task):
    """Three Gaussian blobs in 4 dimensions; a linear or MLP classifier."""
    name = "blobs"
    metric = "accuracy"
    higher_is_better = True

    def __init__(self, hidden, with_logits):
        g = torch.Generator().manual_seed(0)
        y = torch.arange(300) % 3
        x = torch.randn(300, 4, generator=g) + 2.0 * F.one_hot(y, 4).float()
        self.data = TensorDataset(x, y)
        self.hidden, self.with_logits = hidden, with_logits

    def build_model(self):
        if self.hidden:
            return nn.Sequential(nn.Linear(4, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 3))
        return nn.Linear(4, 3)

    def train_data(self):
        return self.data

    def eval_data(self):
        return self.data

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)  # (B, 3)
        per_sample = F.cross_entropy(logits, y, reduction="none")
        return LossOutput(per_sample.sum(), float(len(y)), per_sample=per_sample,
                          logits=logits if self.with_logits else None)

    def metrics(self, model, batch):
        x, y = batch
        correct = (model(x).argmax(-1) == y).sum().float()
        return {"accuracy": (correct, float(len(y)))}

def make_task(hidden=0, with_logits=True):
    return Blobs(hidden, with_logits)
'''

BASE = ["train.steps=30", "train.batch_size=30", "train.eval_every=0", "schedule.warmup_steps=3",
        "optim.lr=0.02", "log.progress=off", "log.every=1"]


@pytest.fixture
def blobs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "blobs_task.py").write_text(textwrap.dedent(SOURCE))
    return "blobs_task:make_task"


def test_user_task_is_distilled_from_its_run_dir(blobs, tmp_path):
    teacher = tmp_path / "teacher"
    run(load_config(None, [f"task.name={blobs}", "task.options.hidden=16", *BASE]), run_dir=teacher, progress=False)
    cfg = load_config(None, [f"task.name={blobs}", *BASE, f"distill.teacher={teacher}"])
    result = run(cfg, run_dir=tmp_path / "student", progress=False)
    rows = [r for r in read_jsonl(tmp_path / "student" / "metrics.jsonl") if "train/loss/kd" in r]
    assert len(rows) == 30
    assert rows[-1]["train/loss/kd"] < rows[0]["train/loss/kd"]  # the student moves towards the teacher
    assert {"eval/accuracy", "eval/teacher_top1", "eval/teacher_kl", "eval/teacher_accuracy"} <= set(result.metrics)


def test_user_task_without_logits_is_exit_2(blobs, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    run(load_config(None, [f"task.name={blobs}", *BASE]), run_dir=teacher, progress=False)
    code = main(["train", "--set", f"task.name={blobs}", "--set", "task.options.with_logits=false",
                 *sum((["--set", s] for s in BASE), []), "--set", f"distill.teacher={teacher}"])
    err = capsys.readouterr().err
    assert code == 2 and "gives no logits" in err and "LossOutput.logits" in err and "Traceback" not in err
