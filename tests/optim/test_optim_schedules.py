from __future__ import annotations

import dataclasses
import math

import pytest

from trainwell.errors import ConfigError
from trainwell.optim import build_schedule
from trainwell.optim.config import ScheduleConfig

NAMES = ["constant", "warmup_cosine", "warmup_linear", "wsd", "trapezoidal", "cosine_restarts", "step"]
T = 100


def _sched(name: str, **kw):
    return build_schedule(ScheduleConfig(name=name, **kw), T)


@pytest.mark.parametrize("name", NAMES)
def test_warmup_is_linear_from_above_zero_to_one(name: str) -> None:
    s = _sched(name, warmup_steps=10)
    assert s(0) == pytest.approx(0.1)  # (0 + 1) / 10: the first update is not wasted
    assert s(4) == pytest.approx(0.5)
    assert s(9) == pytest.approx(1.0)  # the last warmup step reaches the peak
    assert all(s(i) < s(i + 1) for i in range(9))


@pytest.mark.parametrize("name", NAMES)
def test_no_warmup_starts_at_peak(name: str) -> None:
    assert _sched(name, warmup_steps=0)(0) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_pure_function_of_step(name: str) -> None:
    s = _sched(name, warmup_steps=10, step_every=20)
    values = [s(i) for i in range(T)]
    assert [s(i) for i in reversed(range(T))] == values[::-1]  # order of calls is irrelevant
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.warmup_steps = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", ["warmup_cosine", "warmup_linear", "wsd", "trapezoidal", "step"])
def test_non_increasing_after_warmup(name: str) -> None:
    s = _sched(name, warmup_steps=10, step_every=20)
    after = [s(i) for i in range(10, T + 5)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))


@pytest.mark.parametrize("name", ["warmup_cosine", "warmup_linear", "wsd", "trapezoidal"])
def test_continuous_at_phase_boundaries(name: str) -> None:
    s = _sched(name, warmup_steps=10, decay_fraction=0.3)
    # No jump bigger than a typical step anywhere: at most a warmup increment (1/10).
    jumps = [abs(s(i + 1) - s(i)) for i in range(T + 3)]
    assert max(jumps) <= 0.1 + 1e-12


def test_warmup_cosine_key_points() -> None:
    s = _sched("warmup_cosine", warmup_steps=10, min_lr_ratio=0.2)
    assert s(10) == pytest.approx(1.0)
    assert s(55) == pytest.approx(0.2 + 0.8 * 0.5)  # halfway through the decay
    assert s(T) == pytest.approx(0.2) and s(T + 50) == pytest.approx(0.2)
    assert s(40) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 30 / 90)))


def test_warmup_linear_ends_at_ten_percent_like_opt() -> None:
    s = _sched("warmup_linear", warmup_steps=10, min_lr_ratio=0.5)  # min_lr_ratio not used
    assert s(10) == pytest.approx(1.0)
    assert s(55) == pytest.approx(0.55)
    assert s(T) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["wsd", "trapezoidal"])
def test_stable_then_decay(name: str) -> None:
    s = _sched(name, warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.05)
    assert all(s(i) == 1.0 for i in range(9, 80))  # stable until the last 20%
    assert s(90) == pytest.approx(1.0 - 0.95 * 0.5)
    assert s(T) == pytest.approx(0.05)
    assert s(79) == 1.0 and s(81) < 1.0


def test_step_decay_every_n_after_warmup() -> None:
    s = _sched("step", warmup_steps=5, step_every=30, step_gamma=0.5)
    assert s(5) == 1.0 and s(34) == 1.0
    assert s(35) == 0.5 and s(64) == 0.5
    assert s(65) == 0.25


def test_constant_holds_peak() -> None:
    s = _sched("constant", warmup_steps=3)
    assert all(s(i) == 1.0 for i in range(2, 2 * T))


@pytest.mark.parametrize("name", ["warmup_cosine", "warmup_linear", "wsd", "trapezoidal", "step"])
def test_warmup_longer_than_training_is_a_config_error(name: str) -> None:
    with pytest.raises(
        ConfigError, match=r"schedule.warmup_steps \(500\) must be < train.steps \(200\)"
    ):
        build_schedule(ScheduleConfig(name=name, warmup_steps=500), 200)


def test_constant_accepts_any_warmup() -> None:
    s = build_schedule(ScheduleConfig(name="constant", warmup_steps=500), 200)
    assert s(199) == pytest.approx(200 / 500)


def test_wsd_warmup_plus_decay_must_fit() -> None:
    with pytest.raises(ConfigError, match="schedule.decay_fraction"):
        build_schedule(ScheduleConfig(name="wsd", warmup_steps=50, decay_fraction=0.6), 100)


def test_tiny_run_still_ends_at_floor() -> None:
    s = build_schedule(ScheduleConfig(name="wsd", warmup_steps=0, min_lr_ratio=0.1), 2)
    assert s(2) == pytest.approx(0.1)


def test_negative_step_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="step must be >= 0"):
        _sched("constant")(-1)


def test_cosine_restarts_cycles_double_and_restart_at_the_peak() -> None:
    s = build_schedule(ScheduleConfig(name="cosine_restarts", warmup_steps=2, min_lr_ratio=0.0), 72)
    first = (72 - 2) // 7  # 10: cycles of 10, 20 and 40 steps after the warmup
    assert first == 10
    starts = [2, 12, 32]
    for a, b in zip(starts, [*starts[1:], 72], strict=True):
        assert s(a) == pytest.approx(1.0)  # each cycle starts at the peak
        assert all(s(i) > s(i + 1) for i in range(a, b - 1))  # and only decays within it
        mid = (a + b) // 2
        assert s(mid) == pytest.approx(0.5, abs=0.08)  # half way down at half the cycle
    assert s(71) < 0.01  # the third cycle ends near min_lr_ratio at the last step
