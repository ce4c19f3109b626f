"""The gradient noise scale: two-batch (micro-batches) and one-batch (per-sample) estimators."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from inst_helpers import ClsTask, cls_batch, mlp, runner_for, train_step
from torch import nn

from trainwell.instruments import InstrumentRunner
from trainwell.instruments.noise_scale import GradNoiseScale
from trainwell.tasks.base import LossOutput, Task


def accumulate(
    model: nn.Module, task: Task, micro: list[Any], runner: InstrumentRunner, step: int
) -> None:
    """step.py's accumulation: scale by a reference count, correct once at the end."""
    k, norm_ref = len(micro), None
    count = torch.zeros(())
    for batch in micro:
        out = task.loss(model, batch)
        if norm_ref is None:
            norm_ref = out.count * k
        (out.sum / norm_ref).backward()
        runner.after_micro_backward(step, out.count, 1.0 / norm_ref)
        count += out.count
    for p in model.parameters():
        p.grad.mul_(norm_ref / count)


def _grad(model: nn.Module, task: Task, batch: Any) -> torch.Tensor:
    model.zero_grad()
    out = task.loss(model, batch)
    (out.sum / out.count).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    model.zero_grad()
    return g


def test_two_batch_estimator_matches_explicit_micro_batch_gradients() -> None:
    model, task = mlp(), ClsTask()
    x, y = cls_batch(n=14)
    micro = [(x[:4], y[:4]), (x[4:9], y[4:9]), (x[9:], y[9:])]  # unequal sizes
    smalls = [_grad(model, task, b) for b in micro]
    big = _grad(model, task, (x, y))
    runner = runner_for(model, task, preset="off", include=("noise_scale",))
    accumulate(model, task, micro, runner, 0)
    runner.before_update(0, (x, y), 0.0, 0.1)
    m = runner.after_update(0)

    n_big = 14.0
    g2 = [
        (n_big * big.dot(big) - len(b[1]) * s.dot(s)) / (n_big - len(b[1]))
        for s, b in zip(smalls, micro, strict=True)
    ]
    tr = [
        (s.dot(s) - big.dot(big)) / (1 / len(b[1]) - 1 / n_big)
        for s, b in zip(smalls, micro, strict=True)
    ]
    g2_mean, tr_mean = sum(g2) / 3, sum(tr) / 3
    # first EMA update: the bias corrections cancel in the ratio and in the debiased parts
    assert m["inst/noise_scale"] == pytest.approx(float(tr_mean / g2_mean), rel=1e-4)
    assert m["inst/noise_scale/trace_sigma"] == pytest.approx(float(tr_mean), rel=1e-4)
    assert m["inst/noise_scale/grad_sq"] == pytest.approx(float(g2_mean), rel=1e-4)


def test_micro_batches_of_a_step_that_is_not_due_are_ignored() -> None:
    model, task = mlp(), ClsTask()
    x, y = cls_batch(n=8)
    runner = runner_for(model, task, preset="off", include=("noise_scale",), every=2)
    accumulate(model, task, [(x[:4], y[:4]), (x[4:], y[4:])], runner, 1)
    assert runner._micro is None
    runner.before_update(1, (x, y), 0.0, 0.1)
    assert runner.after_update(1) == {}


class Mean(Task):
    """ℓ_i = ½‖θ − x_i‖²: g_i = θ − x_i, so G = θ − μ and Σ = Cov(x)."""

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        (x,) = batch
        ps = 0.5 * (model.theta - x).square().sum(-1)  # (B,)
        return LossOutput(ps.sum(), torch.tensor(float(len(ps))), {}, ps)


class Point(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.full((d,), 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_both_estimators_recover_a_known_noise_scale() -> None:
    d, sigma = 20, 0.5
    model = Point(d)  # θ = 1, μ = 0: |G|² = d, tr(Σ) = d σ²
    expected = d * sigma**2 / d
    task = Mean()
    runner = runner_for(
        model, task, preset="off", include=("noise_scale", "noise_scale_ps"), noise_ema=0.9
    )
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # keep θ fixed: a stationary problem
    m: dict[str, float] = {}
    for step in range(60):
        x = sigma * torch.randn(32, d, generator=gen)
        opt.zero_grad()
        accumulate(model, task, [(x[:8],), (x[8:16],), (x[16:24],), (x[24:],)], runner, step)
        runner.before_update(step, (x,), 0.0, 0.0)
        opt.step()
        m = runner.after_update(step)
    assert m["inst/noise_scale"] == pytest.approx(expected, rel=0.2)
    assert m["inst/noise_scale_ps"] == pytest.approx(expected, rel=0.2)
    assert m["inst/noise_scale_ps/grad_sq"] == pytest.approx(d, rel=0.05)


def test_separate_ema_is_a_ratio_of_averages_and_skips_nonfinite() -> None:
    inst = GradNoiseScale(beta=0.5)
    inst.ema.update(trace=4.0, grad_sq=1.0)
    inst.ema.update(trace=float("nan"), grad_sq=1.0)  # skipped
    inst.ema.update(trace=1.0, grad_sq=4.0)
    # EMAs (bias-corrected alike): trace 0.5·4·0.5 + 0.5·1 = 1.5, grad_sq 0.5·1·0.5 + 0.5·4 = 2.25
    out = inst.ema.report("noise_scale")
    assert out["inst/noise_scale"] == pytest.approx(1.5 / 2.25)  # not the mean of 4 and 0.25
    assert inst.state_dict()["updates"] == 2
    other = GradNoiseScale(beta=0.5)
    other.load_state_dict(inst.state_dict())
    assert other.ema.report("noise_scale") == out


def test_without_accumulation_only_an_explicit_request_notes_why() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    explicit = runner_for(model, task, preset="off", include=("noise_scale",))
    assert (
        train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), explicit, 0)
        == {}
    )
    assert any("train.accumulate" in w for w in explicit.warnings)
    quiet = runner_for(model, task, preset="minimal")
    train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), quiet, 0)
    assert quiet.warnings == []


def test_a_single_micro_batch_announced_by_the_loop_copies_no_gradient(monkeypatch) -> None:  # noqa: ANN001
    """begin(step, micro=1): the micro-batch tracker never runs (nothing to compare), and
    the result is what the tracker would have given: nothing, with the same note."""
    from trainwell.instruments import runner as runner_mod

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("MicroTracker built for a single micro-batch")

    model, task, (x, y) = mlp(), ClsTask(), cls_batch()
    runner = runner_for(model, task, preset="off", include=("noise_scale",))
    monkeypatch.setattr(runner_mod, "MicroTracker", refuse)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    runner.begin(0, micro=1)
    out = task.loss(model, (x, y))
    (out.sum / float(out.count)).backward()
    runner.after_micro_backward(0, float(out.count), 1.0 / float(out.count), len(x), out.per_sample)
    runner.before_update(0, (x, y), float(out.sum.detach()) / float(out.count), 0.1)
    opt.step()
    assert runner.after_update(0) == {}
    assert any("train.accumulate" in w for w in runner.warnings)
