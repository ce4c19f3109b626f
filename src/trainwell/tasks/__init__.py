"""Tasks: the registry of built-in tasks and the resolution of user entry points."""

from __future__ import annotations

from trainwell.registry import Registry
from trainwell.tasks.base import LossOutput, MetricSums, Task, TaskSpec

TASKS: Registry[TaskSpec] = Registry("task", "task.name")

__all__ = ["TASKS", "LossOutput", "MetricSums", "Task", "TaskSpec"]
