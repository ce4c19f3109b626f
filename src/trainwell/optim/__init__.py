"""Optimizers by name, parameter groups, and learning-rate schedules."""

from __future__ import annotations

from trainwell.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer", "optim.name")
