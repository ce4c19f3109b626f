"""StepRecord: frozen, with its finite flag computed at construction."""

from __future__ import annotations

import dataclasses
import math

import pytest

from trainwell.train.record import StepRecord


def test_finite_flag_and_frozen():
    r = StepRecord(step=3, iteration=4, loss=1.5, grad_norm=0.2, lr=1e-3, clip_norm=1.0)
    assert r.finite and r.components == {} and r.applied and r.loss_scale == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.loss = 2.0  # type: ignore[misc]
    assert not dataclasses.replace(r, grad_norm=math.inf).finite
    assert not StepRecord(0, 1, math.nan, 0.1, 1e-3, 1.0).finite
    assert "finite" not in dataclasses.asdict(r)  # not a field
    assert r == StepRecord(3, 4, 1.5, 0.2, 1e-3, 1.0) and r != dataclasses.replace(r, loss=1.0)


def test_components_default_is_not_shared():
    a = StepRecord(0, 1, 1.0, 1.0, 1e-3, 1.0)
    b = StepRecord(0, 1, 1.0, 1.0, 1e-3, 1.0)
    assert a.components is not b.components
