"""Integration: the built-in digits task (residual MLP with LayerNorm) under every preset."""

from __future__ import annotations

import math

import pytest
import torch

from trainwell.config import load_config
from trainwell.instruments import InstrumentRunner, InstrumentsConfig
from trainwell.tasks import build_task


@pytest.fixture(scope="module")
def digits():  # noqa: ANN201
    task = build_task(load_config(overrides=["task.name=digits"]))
    data = task.train_data()
    batches = [task.collate([data[i] for i in range(s * 16, s * 16 + 16)]) for s in range(3)]
    return task, batches


# full adds sequential Hessian-vector products: seconds on a busy 2-core machine
@pytest.mark.parametrize(
    "preset", ["minimal", "economy", pytest.param("full", marks=pytest.mark.slow)]
)
def test_digits_under_a_preset(digits, preset: str) -> None:  # noqa: ANN001
    task, batches = digits
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = InstrumentsConfig(preset=preset, every=2, hess_iters=5, hess_samples=2)
    runner = InstrumentRunner(model, task, cfg, strict=True)
    measured = []
    for step, batch in enumerate(batches):
        opt.zero_grad()
        out = task.loss(model, batch)
        loss = out.sum / out.count
        loss.backward()
        runner.before_update(step, batch, float(loss.detach()), 3e-3)
        opt.step()
        measured.append(runner.after_update(step))
    # economy and full: the step after a measurement finishes Alpha on the next batch
    assert [bool(m) for m in measured] == [True, preset != "minimal", True]
    assert preset == "minimal" or set(measured[1]) == {"inst/alpha"}
    m = measured[-1]
    assert all(math.isfinite(v) for k, v in m.items() if not k.startswith("inst/update_ratio/"))
    assert m["inst/final_act_rms"] > 0
    if preset != "minimal":
        assert -1.0 <= measured[1]["inst/alpha"] < 10
        assert "inst/grad_hist1d/std" in m and "inst/act_mean/body.1.act" in m
        assert runner.histograms()["grad_hist1d"][-1].counts.sum() > 0
    if preset == "full":
        assert m["inst/hess_max_ev"] != 0 and "inst/tic" in m
    assert runner.warnings == []
