"""The ``[distill]`` section: a teacher in the loss (knowledge distillation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainwell.section import Section


class DistillConfig(Section):
    teacher: str | None = None
    """A finished run directory whose newest valid checkpoint teaches the student (its config.toml rebuilds the teacher's model); empty = no distillation. The teacher must give logits over the same classes (vocabulary) as the student and read the student's batches."""
    weights: Literal["auto", "model", "ema"] = "auto"
    """Which of the teacher run's weights: 'model' (raw), 'ema', or 'auto' = the EMA weights when the run kept them and its final evaluation (summary.json) scored them better than the raw ones, else the raw weights."""
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of the distillation term: loss = (1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T). 0.5 weighs both equally, as torchtune's distillation recipe does (kd_ratio 0.5)."""
    temperature: float = Field(1.0, gt=0.0)
    """Softmax temperature T of both teacher and student in the distillation term (Hinton et al. 2015); the T^2 factor keeps its gradient scale independent of T. 1.0 = the distributions as they are (torchtune's forward KL has no temperature); higher T weighs the teacher's small probabilities more."""
