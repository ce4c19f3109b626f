"""trainwell.distill.distill: any nn.Module teaches a task from Python."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.distill import distill
from trainwell.errors import ConfigError

CONFIG = {"task": {"name": "digits"}, "model": {"kind": "mlp", "depth": 1, "width": 8},
          "train": {"steps": 8, "eval_every": 0}, "schedule": {"warmup_steps": 2}, "log": {"every": 1},
          "distill": {"alpha": 0.8, "temperature": 2.0}}


def test_a_module_teaches_a_task(tmp_path):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    teacher.train()
    result = distill(teacher, CONFIG, run_dir=tmp_path / "r", progress=False)
    assert {"eval/accuracy", "eval/teacher_top1", "eval/teacher_kl", "eval/teacher_accuracy"} <= set(result.metrics)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert any("train/loss/kd" in row for row in result.history)


def test_a_module_over_other_classes_is_refused_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match=r"the teacher Linear: .*shape \(2, 3\)"):
        distill(nn.Linear(64, 3), CONFIG, run_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_a_module_and_a_teacher_run_together_are_refused(tmp_path):
    cfg = {**CONFIG, "distill": {"teacher": str(tmp_path)}}
    with pytest.raises(ConfigError, match="leave distill.teacher empty"):
        distill(nn.Linear(64, 10), cfg, progress=False)
