"""The autopilot's quiet-step test in decide() gives exactly the verdict of every guard's
own check, on values right at, just inside and just outside each threshold."""

from __future__ import annotations

import math
import random

import pytest
from guard_helpers import clean_values, record

from trainwell.guards import Action, Autopilot, GuardsConfig


def verdicts_agree(pilot: Autopilot, r) -> bool:  # noqa: ANN001
    fast, full = pilot.decide(r), pilot._decide(r)
    return (fast.action, fast.reason) == (full.action, full.reason)


def warmed(robust: bool, seed: int) -> Autopilot:
    pilot = Autopilot(GuardsConfig(spike_robust=robust))
    rng = random.Random(seed)
    for t, v in enumerate(clean_values(seed, 300)):
        r = record(step=t, iteration=t + 1, input_rms=1.0 + 0.05 * rng.random(), **v)
        pilot.after(r, pilot.decide(r))
    return pilot


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_shortcut_agrees_with_the_checks_at_every_threshold(robust: bool, seed: int) -> None:
    pilot = warmed(robust, seed)
    assert pilot._limits is not None  # warmed up: the shortcut is live
    sp, ip = pilot.spike, pilot.inputs
    lc, ls, gc, gs = sp._ref
    mean, std = ip._ref
    loss_at = lc + sp.sigma * ls  # z = sigma exactly (up to rounding)
    grad_at = math.exp(gc + sp.sigma * gs)
    input_at = math.exp(mean + ip.sigma * std)
    quiet = {"loss": lc, "grad_norm": math.exp(gc), "input_rms": math.exp(mean)}
    fired = 0
    for name, at in (("loss", loss_at), ("grad_norm", grad_at), ("input_rms", input_at)):
        for rel in (-1e-3, -1e-8, -1e-12, 0.0, 1e-12, 1e-8, 1e-3, 1.0):
            for ulps in (-2, -1, 0, 1, 2):
                x = at * (1 + rel)
                for _ in range(abs(ulps)):
                    x = math.nextafter(x, math.inf if ulps > 0 else -math.inf)
                r = record(step=300, iteration=301, **{**quiet, name: x})
                assert verdicts_agree(pilot, r), (name, rel, ulps)
                fired += pilot.decide(r).action is not Action.APPLY
    assert fired >= 3  # far enough past each threshold, the guards do fire
    for odd in ({"loss": math.nan}, {"grad_norm": math.inf}, {"input_rms": math.nan},
                {"input_rms": math.inf}, {"input_rms": 0.0}, {"loss_scale": 0.5}):
        assert verdicts_agree(pilot, record(step=300, iteration=301, **{**quiet, **odd})), odd


def test_no_shortcut_where_a_check_could_fire_on_a_quiet_looking_step() -> None:
    """When the rollback policy's divergence count could complete on this step, or the
    autopilot is off, decide() runs the checks."""
    pilot = warmed(False, 0)
    pilot.rollback.above = pilot.rollback.divergence_steps - 1
    pilot._set_limits()
    assert pilot._limits is None
    off = Autopilot(GuardsConfig(enabled=False))
    assert off._limits is None
    assert off.decide(record(loss=math.nan)).action is Action.STOP


def test_limits_follow_a_restore() -> None:
    pilot = warmed(False, 1)
    state = pilot.state_dict()
    fresh = Autopilot(GuardsConfig())
    assert fresh._limits == (math.inf, math.inf, math.inf, fresh.rollback.min_loss_scale)
    fresh.load_state_dict(state)
    assert fresh._limits == pilot._limits
