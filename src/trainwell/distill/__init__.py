"""Distillation: a student trained against a frozen teacher's softened logits.

``distill.teacher = "runs/X"`` in a run config (the teacher from a run directory), or from
Python any nn.Module: ``trainwell.distill.distill(teacher, config)``, or
``DistillTask(student_task, teacher, alpha=0.5, temperature=1.0)`` as a Task.
See docs/distillation.md.

Names are imported on first use (PEP 562): the config imports ``trainwell.distill.config``
without the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DistillConfig": "trainwell.distill.config",
    "DistillTask": "trainwell.distill.task",
    "freeze": "trainwell.distill.task",
    "kd_per_target": "trainwell.distill.loss",
    "top1_agreement": "trainwell.distill.loss",
    "Teacher": "trainwell.distill.teacher",
    "check_fit": "trainwell.distill.teacher",
    "distill_task": "trainwell.distill.teacher",
    "load_teacher": "trainwell.distill.teacher",
    "distill": "trainwell.distill.api",
    "distill_verdict": "trainwell.distill.verdict",
}

__all__ = [  # noqa: F822 (resolved lazily by __getattr__)
    "DistillConfig",
    "DistillTask",
    "Teacher",
    "check_fit",
    "distill",
    "distill_task",
    "distill_verdict",
    "freeze",
    "kd_per_target",
    "load_teacher",
    "top1_agreement",
]

if TYPE_CHECKING:
    from trainwell.distill.api import distill
    from trainwell.distill.config import DistillConfig
    from trainwell.distill.loss import kd_per_target, top1_agreement
    from trainwell.distill.task import DistillTask, freeze
    from trainwell.distill.teacher import Teacher, check_fit, distill_task, load_teacher
    from trainwell.distill.verdict import distill_verdict


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainwell.distill' has no attribute {name!r}")
