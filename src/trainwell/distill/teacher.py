"""The teacher from a run directory: its config.toml rebuilds its task's model, and its newest
valid checkpoint (the raw or the EMA weights) fills it. ``distill_task`` wraps a student task
with it and checks, before anything trains, that the two fit together.

Every problem is collected and reported at once as one ConfigError naming
``distill.teacher`` (exit code 2 from the CLI), before the run directory exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.checkpoint.export import newest_weights
from trainwell.errors import CheckpointError, ConfigError, TrainwellError
from trainwell.tasks.base import Task
from trainwell.train.rng import rng_state, set_rng_state

if TYPE_CHECKING:
    from trainwell.config import RunConfig
    from trainwell.distill.task import DistillTask

PROBE_SAMPLES = 2
"""Samples in the batch that checks teacher and student against each other (small: it only
has to show the shapes)."""


@dataclass
class Teacher:
    model: nn.Module
    task: Task
    """The teacher run's own task (built from its config.toml)."""
    source: str
    """'RUN_DIR (ema weights, step N)': what was loaded, for the logs and the report."""


def load_teacher(run_dir: str | Path, weights: str = "auto") -> Teacher:
    """The model of a run directory with its newest valid checkpoint's weights
    (``weights``: 'model', 'ema', or 'auto', see DistillConfig.weights), in eval mode.
    The random number generators are left as they were (a seeded student is initialised the
    same with or without a teacher)."""
    run_dir = Path(run_dir)
    key = "distill.teacher"
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "no such run directory"
        raise ConfigError(f"{key} = {str(run_dir)!r}: {what}; name a finished `trainwell train` run")
    problems: list[str] = []
    cfg = _teacher_config(run_dir, problems)
    known = len(problems)
    part = "model" if cfg is None else _pick_weights(run_dir, weights, cfg, problems)
    ema_refused = len(problems) > known
    try:
        info, weights_state = newest_weights(run_dir, ema=part == "ema", purpose="teach a student")
    except CheckpointError as e:
        info = None
        if not ema_refused:  # a missing EMA part is explained by _pick_weights already
            problems.append(f"{key} = {str(run_dir)!r}: {' '.join(str(e).split())}")
    if cfg is None or info is None or problems:
        raise ConfigError(problems)
    state = rng_state()
    try:
        task, model = _build(cfg, run_dir)
        try:
            model.load_state_dict(weights_state)
        except RuntimeError as e:  # shapes or names differ: the checkpoint is not this config's model
            raise ConfigError(f"{key} = {str(run_dir)!r}: its {part} weights do not fit the model its "
                              f"config.toml builds: {' '.join(str(e).split())[:400]}") from None
    finally:
        set_rng_state(state)
    model.eval()
    return Teacher(model, task, f"{run_dir} ({part} weights, step {info.step})")


def distill_task(cfg: RunConfig, student: Task) -> DistillTask:
    """``student`` wrapped with the teacher of ``cfg.distill``, checked on one batch of the
    student's training data: the teacher must read it and score the same targets over the
    same classes."""
    from trainwell.distill.task import DistillTask

    d = cfg.distill
    assert d.teacher is not None  # the caller checks
    teacher = load_teacher(d.teacher, d.weights)
    task = DistillTask(student, teacher.model, alpha=d.alpha, temperature=d.temperature, source=teacher.source)
    problems = check_fit(task, teacher.task)
    if problems:
        raise ConfigError([f"distill.teacher = {d.teacher!r}: {p}" for p in problems])
    return task


def check_fit(task: DistillTask, teacher_task: Task | None = None) -> list[str]:
    """Why the teacher and the student do not fit together (empty: they do). Compares the
    tasks' class counts where both have one, then runs both models on a small batch of the
    student's training data (the student freshly built; the generators are restored)."""
    s, t = class_count(task.student), class_count(teacher_task)
    if s is not None and t is not None and s != t:
        return [f"the teacher (task {teacher_task.name}) scores {t} classes, the student "
                f"(task {task.student.name}) {s}; a teacher must score the student's classes (vocabulary)"]
    state = rng_state()
    try:
        student = task.student.build_model()
        device = next((p.device for p in student.parameters()), torch.device("cpu"))
        batch = _probe_batch(task, device)
        with torch.no_grad():
            logits = task.student.loss(student, batch).logits
            if logits is None:
                return [f"the student task {task.student.name!r} gives no logits (LossOutput.logits); "
                        "distillation needs them (docs/distillation.md)"]
            try:  # e.g. a teacher with a shorter context than the student's batches
                task.teacher_logits(batch, like=logits)
            except TrainwellError as e:
                return [str(e)]
    finally:
        set_rng_state(state)
    return []


def class_count(task: Task | None) -> int | None:
    """The number of classes a task's logits score (a language model's vocabulary, a
    classifier's classes), when the task says."""
    for attr in ("vocab_size", "num_classes"):
        n = getattr(task, attr, None)
        if isinstance(n, int):
            return n
    return None


def _probe_batch(task: DistillTask, device: torch.device) -> Any:
    from trainwell.data.loader import to_device

    data = task.train_data()
    n = min(PROBE_SAMPLES, len(data))  # type: ignore[arg-type]
    idx = torch.arange(n)
    get_batch = getattr(data, "get_batch", None)
    batch = get_batch(idx) if get_batch is not None else task.collate([data[i] for i in range(n)])
    return to_device(batch, device)


def _teacher_config(run_dir: Path, problems: list[str]) -> RunConfig | None:
    from trainwell.config import load_config

    path = run_dir / "config.toml"
    if not path.is_file():
        problems.append(f"distill.teacher = {str(run_dir)!r}: no config.toml in it; is it a run directory?")
        return None
    try:
        return load_config(path)
    except ConfigError as e:
        problems.append(f"distill.teacher = {str(run_dir)!r}: its config.toml is not valid here: "
                        + "; ".join(e.problems))
        return None


def _pick_weights(run_dir: Path, weights: str, cfg: RunConfig, problems: list[str]) -> str:
    if weights == "model":
        return "model"
    kept_ema = cfg.ema.decay > 0
    if weights == "ema":
        if not kept_ema:
            problems.append(f"distill.weights = 'ema': the teacher run {str(run_dir)!r} kept no EMA weights "
                            "(it trained with ema.decay = 0); use distill.weights = 'model' or 'auto'")
        return "ema"
    return "ema" if kept_ema and _ema_scored_better(run_dir / "summary.json") else "model"


def _ema_scored_better(summary_path: Path) -> bool:
    """Whether the run's final evaluation scored the EMA weights better than the raw ones
    on its main metric (False when summary.json does not say)."""
    try:
        summary: Mapping[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
        metric = str(summary["metric"]).removeprefix("eval/")
        raw, ema = summary["final"][f"eval/{metric}"], summary["final"][f"eval_ema/{metric}"]
        higher = bool(summary.get("higher_is_better", False))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return ema > raw if higher else ema < raw


def _build(cfg: RunConfig, run_dir: Path) -> tuple[Task, nn.Module]:
    """The teacher run's task and a fresh model of it. A distilled teacher's own teacher is
    not loaded (only its weights matter here)."""
    from trainwell.tasks import build_plain_task

    try:
        task = build_plain_task(cfg)
    except TrainwellError as e:
        raise ConfigError(f"distill.teacher = {str(run_dir)!r}: its task cannot be built here: {e}") from None
    return task, task.build_model()
