"""DistillTask: a student task whose loss mixes its own loss with a frozen teacher's.

    loss = (1 - alpha) * task loss + alpha * T^2 * KL(teacher at T || student at T)

summed over the targets the student task counts (the step divides by their number, so the
mixture is per target like the task loss). The training step is unchanged: it sees a Task
like any other, and the two terms reach the logs as the loss components ``train/loss/task``
and ``train/loss/kd`` (each per target, before weighting). Evaluation reports, beside the
task's metrics, the student's agreement with the teacher (``teacher_top1``: share of
targets whose most likely class is the teacher's; ``teacher_kl``: KL(teacher || student) at
temperature 1 in nats per target) and the teacher's own main metric (``teacher_<metric>``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from trainwell.distill.loss import kd_per_target, per_sample_sums, top1_agreement
from trainwell.errors import TaskError, TrainwellError
from trainwell.tasks.base import LossOutput, MetricSums, Task


def freeze(teacher: nn.Module) -> nn.Module:
    """The teacher as distillation uses it: eval mode (no dropout, BatchNorm's running
    statistics) and no parameter that asks for a gradient."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


class DistillTask(Task):
    """Wraps ``student`` (any Task whose ``loss`` gives ``LossOutput.logits``) with a
    frozen ``teacher`` (any nn.Module that reads the student's batches and gives logits over
    the same classes). Data, model, sampling and the main metric are the student's."""

    def __init__(self, student: Task, teacher: nn.Module, *, alpha: float = 0.5,
                 temperature: float = 1.0, source: str = "") -> None:
        if not 0.0 <= alpha <= 1.0:
            raise TaskError(f"distill.alpha must be in [0, 1], got {alpha}")
        if not temperature > 0.0:
            raise TaskError(f"distill.temperature must be > 0, got {temperature}")
        self.student = student
        self.teacher = freeze(teacher)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.source = source or type(teacher).__name__
        """Where the teacher came from (a run directory and its weights), for the logs."""
        self.name = student.name
        self.metric = student.metric
        self.higher_is_better = student.higher_is_better
        self.unit = student.unit
        summary = getattr(student, "data_summary", None)
        if summary is not None:
            self.data_summary = summary

    # ------------------------------------------------------------ the student's own parts

    def build_model(self) -> nn.Module:
        return self.student.build_model()

    def train_data(self) -> Dataset:
        return self.student.train_data()

    def eval_data(self) -> Dataset | None:
        return self.student.eval_data()

    def collate(self, samples: list[Any]) -> Any:
        return self.student.collate(samples)

    def sample(self, model: nn.Module, n: int) -> str | None:
        return self.student.sample(model, n)

    # ------------------------------------------------------------ the mixture

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        out = self.student.loss(model, batch)
        student = self._logits(out, "the student")
        teacher = self.teacher_logits(batch, like=student)
        kd_rows = kd_per_target(student, teacher, self.temperature)  # (...,) one per target
        kd = kd_rows.sum()
        a = self.alpha
        total = (1.0 - a) * out.sum + a * kd
        per_sample = None
        if out.per_sample is not None:  # quarantine judges samples by the loss they train on
            kd_samples = per_sample_sums(kd_rows, out.per_sample.shape[0])
            if kd_samples is not None:
                per_sample = (1.0 - a) * out.per_sample + a * kd_samples
        components = {**out.components, "task": out.sum, "kd": kd}
        return LossOutput(total, out.count, components, per_sample, student)

    @torch.no_grad()
    def teacher_logits(self, batch: Any, like: Tensor | None = None) -> Tensor:
        """The teacher's (..., C) logits of the batch's targets (the student task's loss run
        on the teacher, without gradients). ``like``: the student's logits, whose device the
        teacher moves to and whose shape it must give."""
        if like is not None:
            self._follow(like.device)
        if self.teacher.training:  # something switched it back (a user's .train() on all modules)
            self.teacher.eval()
        try:
            out = self.student.loss(self.teacher, batch)
        except (RuntimeError, IndexError, ValueError, TrainwellError) as e:  # labels beyond its classes, a short context
            raise TaskError(f"distillation: the teacher ({self.source}) cannot score the student's "
                            f"batch: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        teacher = self._logits(out, "the teacher")
        if like is not None and teacher.shape != like.shape:
            raise TaskError(
                f"distillation: the teacher ({self.source}) gives logits of shape "
                f"{tuple(teacher.shape)}, the student {tuple(like.shape)}; both must score the "
                "same targets over the same classes (vocabulary)"
            )
        return teacher

    def _follow(self, device: torch.device) -> None:
        p = next(self.teacher.parameters(), None)
        if p is not None and p.device != device:
            self.teacher.to(device)

    def _logits(self, out: LossOutput, who: str) -> Tensor:
        if out.logits is None:
            raise TaskError(
                f"task {self.student.name!r} gives no logits ({who}'s LossOutput.logits is None); "
                "distillation needs them: return LossOutput(..., logits=...) with one row per "
                "target (docs/distillation.md)"
            )
        return out.logits

    # ------------------------------------------------------------ evaluation

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        """The student task's metrics, its agreement with the teacher, and the teacher's own
        main metric on the same batch."""
        sums = dict(self.student.metrics(model, batch))
        student = self._logits(self.student.loss(model, batch), "the student").detach()
        teacher = self.teacher_logits(batch, like=student)
        rows = float(student[..., 0].numel())
        sums["teacher_top1"] = (top1_agreement(student, teacher), rows)
        sums["teacher_kl"] = (kd_per_target(student, teacher, 1.0).sum(), rows)
        teacher_own = self.student.metrics(self.teacher, batch).get(self.metric)
        if teacher_own is not None:
            sums[f"teacher_{self.metric}"] = teacher_own
        return sums
