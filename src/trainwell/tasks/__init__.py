"""Tasks: the registry of built-in tasks and the resolution of user entry points.

Built-in tasks: bytes-lm (the default), digits, digits-vae, quadratic. A user task is
``task.name = "my_pkg.my_module:make_task"``, a function returning a Task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainwell.errors import ConfigError
from trainwell.registry import Registry
from trainwell.tasks import bytes_lm, digits, digits_vae, quadratic
from trainwell.tasks.base import LossOutput, MetricSums, Task, TaskSpec
from trainwell.tasks.user import load_user_task

if TYPE_CHECKING:
    from trainwell.config import RunConfig

TASKS: Registry[TaskSpec] = Registry("task", "task.name")

for _spec in (bytes_lm.SPEC, digits.SPEC, digits_vae.SPEC, quadratic.SPEC):
    TASKS.add(_spec.name, _spec, _spec.help)


def build_task(cfg: RunConfig) -> Task:
    """The Task named by ``cfg.task.name``: a registered built-in, or a user entry point
    'pkg.module:function' (anything with a colon). An unknown name is a ConfigError listing
    the built-in tasks. With ``distill.teacher`` set, the task is the student of that
    teacher (trainwell.distill.DistillTask)."""
    task = build_plain_task(cfg)
    if cfg.distill.teacher:
        from trainwell.distill.teacher import distill_task

        task = distill_task(cfg, task)
    return task


def build_plain_task(cfg: RunConfig) -> Task:
    """The task of ``cfg.task`` alone, without a teacher."""
    name = cfg.task.name
    if name in TASKS:
        return TASKS.get(name).build(cfg)
    if ":" in name:
        return load_user_task(cfg)
    raise ConfigError(TASKS.unknown(name) + ", or a user entry point 'pkg.module:function'")


__all__ = ["TASKS", "LossOutput", "MetricSums", "Task", "TaskSpec", "build_plain_task", "build_task"]
