"""Optimizers by name, parameter groups, and learning-rate schedules.

optimizer = build_optimizer(cfg.optim, model)         # initial_lr on every group
schedule = build_schedule(cfg.schedule, cfg.train.steps)
for group in optimizer.param_groups:                  # before each update
    group["lr"] = group["initial_lr"] * schedule(step)
"""

from __future__ import annotations

from trainwell.optim.groups import param_groups
from trainwell.optim.optimizers import OPTIMIZERS, build_optimizer
from trainwell.optim.schedules import SCHEDULES, Schedule, build_schedule

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Schedule",
    "build_optimizer",
    "build_schedule",
    "param_groups",
]
