"""Learning-rate schedules: pure functions of the step.

``schedule(step)`` is the multiplier of the peak lr for the update that follows ``step``
applied updates (step 0 is the first update). A schedule is a frozen dataclass with no
hidden state, so a resumed run computes exactly the lr it would have used, and a skipped
update (the loop does not advance ``step``) repeats the same lr.

Every schedule starts with the same linear warmup, ``(step + 1) / warmup_steps``: above
zero at step 0 (a zero lr would waste the first update) and exactly 1 at the last warmup
step, so the decay that follows starts from 1 without a jump.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from trainwell.errors import ConfigError
from trainwell.optim.config import ScheduleConfig
from trainwell.registry import Registry

WARMUP_LINEAR_FINAL = 0.1
"""warmup_linear ends at 10% of the peak lr, as OPT-175B (Zhang et al. 2022, sec. 2.2)."""


@dataclass(frozen=True)
class Schedule:
    """Base: linear warmup over ``warmup_steps``, then ``after_warmup(step)``."""

    warmup_steps: int

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"schedule step must be >= 0, got {step}")
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.after_warmup(step)

    def after_warmup(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Constant(Schedule):
    """Warmup, then the peak lr for ever (schedule-free optimizers want this)."""


@dataclass(frozen=True)
class WarmupCosine(Schedule):
    """Cosine from 1 at the end of warmup to ``min_ratio`` at ``total_steps``
    (Loshchilov & Hutter 2017, SGDR without restarts); flat at ``min_ratio`` after."""

    total_steps: int
    min_ratio: float

    def after_warmup(self, step: int) -> float:
        t = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class CosineRestarts(Schedule):
    """SGDR (Loshchilov & Hutter 2017): cosine from 1 to ``min_ratio`` over a cycle, then a
    restart at 1; each cycle twice as long as the one before (T_mult = 2), the first of
    ``first`` steps."""

    first: int
    min_ratio: float

    def after_warmup(self, step: int) -> float:
        t, length = step - self.warmup_steps, self.first
        while t >= length:
            t, length = t - length, length * 2
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t / length))


@dataclass(frozen=True)
class WarmupLinear(Schedule):
    """Linear from 1 at the end of warmup to ``final`` at ``total_steps``; flat after."""

    total_steps: int
    final: float

    def after_warmup(self, step: int) -> float:
        t = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return 1.0 - (1.0 - self.final) * t


@dataclass(frozen=True)
class WarmupStableDecay(Schedule):
    """Warmup, hold at 1, then decay linearly over the last ``decay_steps`` to
    ``min_ratio`` at ``total_steps`` (WSD: Hu et al. 2024, MiniCPM; Hägele et al. 2024
    on cooldowns; the "trapezoidal" schedule of Schmidt et al. 2021). Training can be extended from any point of
    the stable phase by moving the decay later."""

    total_steps: int
    decay_steps: int
    min_ratio: float

    def after_warmup(self, step: int) -> float:
        decay_start = self.total_steps - self.decay_steps
        if step < decay_start:
            return 1.0
        t = min(1.0, (step - decay_start) / self.decay_steps)
        return 1.0 - (1.0 - self.min_ratio) * t


@dataclass(frozen=True)
class StepDecay(Schedule):
    """Warmup, then multiply by ``gamma`` every ``every`` steps (the classic ResNet
    schedule, He et al. 2016)."""

    every: int
    gamma: float

    def after_warmup(self, step: int) -> float:
        return self.gamma ** ((step - self.warmup_steps) // self.every)


ScheduleBuilder = Callable[[ScheduleConfig, int], Schedule]
SCHEDULES: Registry[ScheduleBuilder] = Registry("schedule", "schedule.name")
"""name -> builder(cfg, total_steps). The names are those of ``ScheduleConfig.name``."""


def build_schedule(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    """The schedule ``cfg.name`` for a run of ``total_steps`` updates (``train.steps``).

    Raises ConfigError when the phases do not fit in the run (e.g. a decaying schedule
    whose warmup is as long as training)."""
    if total_steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {total_steps}")
    builder = SCHEDULES.get(cfg.name)
    if cfg.name != "constant" and cfg.warmup_steps >= total_steps:
        raise ConfigError(
            f"schedule.warmup_steps ({cfg.warmup_steps}) must be < train.steps ({total_steps}) "
            f"for the {cfg.name!r} schedule, which decays after warmup; lower "
            "schedule.warmup_steps or use schedule.name = 'constant'"
        )
    return builder(cfg, total_steps)


@SCHEDULES.register("constant", "warmup, then the peak lr")
def _constant(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    return Constant(cfg.warmup_steps)


@SCHEDULES.register("warmup_cosine", "warmup, then cosine down to min_lr_ratio at the end")
def _warmup_cosine(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    return WarmupCosine(cfg.warmup_steps, total_steps, cfg.min_lr_ratio)


@SCHEDULES.register("cosine_restarts", "warmup, then cosine cycles with restarts, each twice as long (SGDR)")
def _cosine_restarts(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    # three cycles of 1, 2 and 4 parts fill the run: the last ends at the last step
    return CosineRestarts(cfg.warmup_steps, max(1, (total_steps - cfg.warmup_steps) // 7), cfg.min_lr_ratio)


@SCHEDULES.register("warmup_linear", "warmup, then linear down to 10% at the end (OPT)")
def _warmup_linear(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    return WarmupLinear(cfg.warmup_steps, total_steps, WARMUP_LINEAR_FINAL)


def _stable_decay(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    # At least one decay step, so that a tiny run still ends at min_lr_ratio.
    decay_steps = max(1, round(cfg.decay_fraction * total_steps))
    if cfg.warmup_steps + decay_steps > total_steps:
        raise ConfigError(
            f"schedule.warmup_steps ({cfg.warmup_steps}) + the decay "
            f"({decay_steps} steps = schedule.decay_fraction {cfg.decay_fraction} x "
            f"train.steps {total_steps}) must be <= train.steps ({total_steps}); lower "
            "schedule.warmup_steps or schedule.decay_fraction"
        )
    return WarmupStableDecay(cfg.warmup_steps, total_steps, decay_steps, cfg.min_lr_ratio)


SCHEDULES.add(
    "wsd", _stable_decay, "warmup, stable at the peak, linear decay over the last decay_fraction"
)
SCHEDULES.add(
    "trapezoidal",
    _stable_decay,
    "warmup, flat, linear cooldown (the trapezoid of Crowded Valley; same shape as wsd)",
)


@SCHEDULES.register("step", "warmup, then x step_gamma every step_every steps")
def _step(cfg: ScheduleConfig, total_steps: int) -> Schedule:
    return StepDecay(cfg.warmup_steps, cfg.step_every, cfg.step_gamma)
