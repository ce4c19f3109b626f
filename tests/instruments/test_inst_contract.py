"""One contract test for every registered instrument: the same checks for each."""

from __future__ import annotations

import math

import pytest
import torch
from inst_helpers import ClsTask, cls_batch, mlp
from test_inst_noise_scale import accumulate

from trainwell.instruments import INSTRUMENTS, InstrumentRunner, InstrumentsConfig
from trainwell.instruments.base import NEEDS, Instrument
from trainwell.instruments.presets import BuildArgs


@pytest.mark.parametrize("name", INSTRUMENTS.names())
def test_instrument_contract(name: str) -> None:
    cfg = InstrumentsConfig(preset="off", include=(name,), every=16)
    inst = INSTRUMENTS.get(name)(BuildArgs(cfg, per_layer=True, explicit=True))
    assert isinstance(inst, Instrument)
    assert inst.name == name
    assert inst.needs <= NEEDS
    doc = type(inst).__doc__ or ""
    assert "Needs" in doc and "Reading" in doc, (
        "the docstring says what it needs and how to read it"
    )

    model, task = mlp(), ClsTask()
    x, y = cls_batch(n=12)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    runner = InstrumentRunner(model, task, cfg, strict=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    accumulate(model, task, [(x[:6], y[:6]), (x[6:], y[6:])], runner, 0)
    grads = [p.grad.clone() for p in model.parameters()]
    runner.before_update(0, (x, y), 1.0, 0.1)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    opt.step()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = runner.after_update(0)
    if runner.due(1):  # a two-step instrument (Alpha) finishes on the next batch
        assert name == "alpha"
        x1, y1 = cls_batch(seed=5, n=12)
        runner.before_update(1, (x1, y1), 1.0, 0.1)
        after = {k: v.clone() for k, v in model.state_dict().items()}
        metrics.update(runner.after_update(1))

    if name in ("attention", "mup_update"):  # no attention, not in muP: nothing to report or explain
        assert metrics == {} and runner.warnings == []
    else:
        assert metrics, f"{name} measured nothing"
    for k, v in metrics.items():
        assert k.startswith("inst/"), k
        assert isinstance(v, float) and not math.isnan(v), (k, v)
    for k, v in model.state_dict().items():
        assert torch.equal(v, after[k]), f"{name} changed {k}"
    assert not torch.equal(after["0.weight"], state["0.weight"])  # the step itself did happen
    assert runner.after_update(0) == {} and not runner.due(2)  # measured once
