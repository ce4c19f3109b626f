"""Gradient, parameter, update and distance norms against direct computations."""

from __future__ import annotations

import pytest
import torch
from inst_helpers import ClsTask, cls_batch, mlp, runner_for, train_step


def test_norms_per_layer_and_global() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    names = ("grad_norm", "param_norm", "update_size", "distance")
    runner = runner_for(model, task, preset="off", include=names, every=2)
    train_step(model, task, batch, opt, runner, 0)
    train_step(model, task, batch, opt, runner, 1)  # not due: nothing measured, distance keeps θ_0

    opt.zero_grad()
    out = task.loss(model, batch)
    (out.sum / out.count).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    runner.before_update(2, batch, 0.0, 0.05)
    opt.step()
    m = runner.after_update(2)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}

    def total(d: dict[str, torch.Tensor]) -> float:
        return float(torch.cat([v.reshape(-1) for v in d.values()]).norm())

    upd = {n: after[n] - before[n] for n in after}
    assert m["inst/grad_norm"] == pytest.approx(total(grads), rel=1e-5)
    assert m["inst/param_norm"] == pytest.approx(total(after), rel=1e-5)
    assert m["inst/update_size"] == pytest.approx(total(upd), rel=1e-5)
    assert m["inst/update_ratio"] == pytest.approx(total(upd) / total(before), rel=1e-5)
    assert m["inst/distance"] == pytest.approx(
        total({n: after[n] - init[n] for n in after}), rel=1e-5
    )
    for n in after:
        assert m[f"inst/grad_norm/{n}"] == pytest.approx(float(grads[n].norm()), rel=1e-5)
        assert m[f"inst/update_size/{n}"] == pytest.approx(float(upd[n].norm()), rel=1e-5)
        assert m[f"inst/update_ratio/{n}"] == pytest.approx(
            float(upd[n].norm() / before[n].norm()), rel=1e-5
        )
        assert m[f"inst/distance/{n}"] == pytest.approx(
            float((after[n] - init[n]).norm()), rel=1e-5
        )


def test_minimal_preset_reports_global_norms_only() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    runner = runner_for(model, task, preset="minimal")
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), runner, 0)
    assert set(m) == {
        "inst/grad_norm",
        "inst/param_norm",
        "inst/update_size",
        "inst/update_ratio",
        "inst/final_act_rms",
    }
    assert runner.warnings == []  # the preset's noise scale stays quiet without accumulation


def test_update_ratio_of_a_zero_initialised_tensor_is_inf() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    with torch.no_grad():
        model[4].bias.zero_()
    runner = runner_for(model, task, preset="off", include=("update_size",))
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), runner, 0)
    assert m["inst/update_ratio/4.bias"] == float("inf")
    assert m["inst/update_size/4.bias"] > 0
