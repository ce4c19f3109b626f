from __future__ import annotations

import math

import pytest
from guard_helpers import record

from trainwell.guards import Action, NonFiniteGuard


@pytest.mark.parametrize(
    ("loss", "grad", "which"),
    [
        (math.nan, 1.0, "loss"),
        (2.0, math.inf, "grad_norm"),
        (math.inf, math.nan, "loss and grad_norm"),
    ],
)
def test_nonfinite_is_skipped_and_names_the_quantity(loss, grad, which):
    g = NonFiniteGuard("skip")
    v = g.check(record(5, 6, loss=loss, grad_norm=grad))
    assert v.action is Action.SKIP and v.reason == "nonfinite" and v.guard == "nonfinite"
    assert v.evidence["quantity"] == which


def test_stop_policy_diagnoses_with_last_finite_values_and_hints():
    g = NonFiniteGuard("stop")
    g.update(record(41, 42, loss=2.5, grad_norm=0.7))
    v = g.check(record(42, 43, loss=math.nan))
    assert v.action is Action.STOP
    assert "step 42" in v.message and "iteration 43" in v.message
    assert "last finite at step 41" in v.message and "2.5" in v.message
    assert "optim.lr" in v.message and "fp32" in v.message
    assert v.evidence["last_finite_loss"] == 2.5


def test_fp16_overflow_is_not_a_fault_but_a_nan_loss_is():
    g = NonFiniteGuard("stop")
    overflow = record(
        3, 4, grad_norm=math.inf, loss_scale=2.0**15, applied=False, reason="fp16_overflow"
    )
    assert g.check(overflow).action is Action.APPLY
    nan_loss = record(
        3, 4, loss=math.nan, grad_norm=math.inf, applied=False, reason="fp16_overflow"
    )
    assert g.check(nan_loss).action is Action.STOP


def test_finite_step_passes_and_check_is_pure():
    g = NonFiniteGuard()
    g.update(record(0, 1, loss=3.0))
    before = g.state_dict()
    assert g.check(record(1, 2, loss=math.nan)).action is Action.SKIP
    assert g.check(record(1, 2)).action is Action.APPLY
    assert g.state_dict() == before


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="guards.nonfinite"):
        NonFiniteGuard("ignore")  # type: ignore[arg-type]
