"""``trainwell.distill.distill(teacher, config)``: train a task as the student of any nn.Module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from trainwell.tasks.base import Task

if TYPE_CHECKING:
    from trainwell.config import RunConfig
    from trainwell.train.loop import RunResult


def distill(
    teacher: nn.Module,
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    student: Task | None = None,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train ``student`` (default: the task of ``config``, built as ``trainwell train`` builds
    it) against ``teacher``, with ``config``'s ``distill.alpha`` and ``distill.temperature``.
    The teacher reads the student's batches and gives logits over the same classes; it is
    frozen and put in eval mode (and moved to the student's device) for the run.
    ``distill.teacher`` must be empty here: the teacher is the module."""
    from trainwell.config import as_run_config
    from trainwell.distill.task import DistillTask
    from trainwell.distill.teacher import check_fit
    from trainwell.errors import ConfigError
    from trainwell.tasks import build_plain_task
    from trainwell.train.loop import run

    cfg = as_run_config(config)
    if cfg.distill.teacher:
        raise ConfigError(f"distill.teacher = {cfg.distill.teacher!r} and a teacher module were both given; "
                          "leave distill.teacher empty when passing the teacher")
    task = DistillTask(student if student is not None else build_plain_task(cfg), teacher,
                       alpha=cfg.distill.alpha, temperature=cfg.distill.temperature)
    problems = check_fit(task)
    if problems:
        raise ConfigError([f"the teacher {type(teacher).__name__}: {p}" for p in problems])
    return run(cfg, task=task, run_dir=run_dir, progress=progress)
