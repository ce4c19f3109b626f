"""Distillation: a student trained against a frozen teacher's softened logits.

``distill.teacher = "runs/X"`` in a run config (the teacher from a run directory), or from
Python any nn.Module: ``DistillTask(student_task, teacher, alpha=0.5, temperature=1.0)``
passed as ``task=`` to ``trainwell.train.loop.run``. See docs/distillation.md.
"""

from __future__ import annotations

from trainwell.distill.config import DistillConfig
from trainwell.distill.loss import kd_per_target, top1_agreement
from trainwell.distill.task import DistillTask, freeze
from trainwell.distill.teacher import Teacher, check_fit, distill_task, load_teacher

__all__ = [
    "DistillConfig",
    "DistillTask",
    "Teacher",
    "check_fit",
    "distill_task",
    "freeze",
    "kd_per_target",
    "load_teacher",
    "top1_agreement",
]
