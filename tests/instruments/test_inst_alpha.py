"""Alpha: the weighted quadratic fit, and α against a brute-force line search."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from inst_helpers import (
    ClsTask,
    RegTask,
    brute_per_sample,
    cls_batch,
    mlp,
    runner_for,
    train_step,
)
from torch import nn

from trainwell.instruments.alpha import fit_quadratic
from trainwell.instruments.functional import FunctionalModel


def test_fit_quadratic_is_weighted_least_squares() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = float(rng.uniform(0.1, 2))
        fs, dfs = rng.normal(size=2), rng.normal(size=2)
        var = rng.uniform(0.1, 3, size=4)
        phi = np.array([[1, 0, 0], [1, t, t * t], [0, 1, 0], [0, 1, 2 * t]])
        w = np.diag(1 / var)
        ref = np.linalg.solve(phi.T @ w @ phi, phi.T @ w @ np.concatenate([fs, dfs]))
        got = fit_quadratic(
            t, torch.tensor(fs), torch.tensor(dfs), torch.tensor(var[:2]), torch.tensor(var[2:])
        )
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-8, atol=1e-10)


def _regression(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    x = torch.randn(16, 3)
    y = x @ torch.randn(3, 2) + 0.3 * torch.randn(16, 2)
    return model, (x, y)


@pytest.mark.parametrize("lr", [0.02, 0.1, 0.3])
def test_alpha_matches_a_brute_force_line_search_on_an_exact_quadratic(lr: float) -> None:
    model, batch = _regression()
    task = RegTask()
    fm = FunctionalModel(model, task)
    before = {n: p.detach().clone() for n, p in fm.live_params().items()}
    runner = runner_for(model, task, preset="off", include=("alpha",), alpha_batch="same")
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=lr), runner, 0)
    after = fm.live_params()

    # the loss along the step, sampled densely: exactly a parabola for a linear model + MSE
    d = {n: after[n] - before[n] for n in before}
    taus = np.linspace(0.0, 2.0, 21)  # in units of the step
    losses = [float(fm.mean_loss({n: before[n] + float(s) * d[n] for n in d}, batch)) for s in taus]
    c2, c1, _ = np.polyfit(taus, losses, 2)
    s_min = -c1 / (2 * c2)  # the valley floor, in units of the step
    expected = 1.0 / s_min - 1.0  # α = 2t/ᾱ − 1 with ᾱ = 2 t s_min
    assert m["inst/alpha"] == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_alpha_is_zero_at_the_valley_floor_and_one_on_the_opposite_wall() -> None:
    for factor, expected in [(1.0, 0.0), (2.0, 1.0)]:
        model, batch = _regression(1)
        task = RegTask()
        fm = FunctionalModel(model, task)
        theta = fm.live_params()
        # exact line minimiser along −g of the quadratic: lr* = gᵀg / gᵀHg
        p = {n: t.clone().requires_grad_(True) for n, t in theta.items()}
        grads = torch.autograd.grad(fm.mean_loss(p, batch), list(p.values()), create_graph=True)
        g = [v.detach() for v in grads]
        hg = torch.autograd.grad(
            sum((a * b).sum() for a, b in zip(grads, g, strict=True)), list(p.values())
        )
        gg = sum(float(v.square().sum()) for v in g)
        curv = sum(float((a * b).sum()) for a, b in zip(g, hg, strict=True))
        lr = factor * gg / curv
        runner = runner_for(model, task, preset="off", include=("alpha",), alpha_batch="same")
        m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=lr), runner, 0)
        assert m["inst/alpha"] == pytest.approx(expected, abs=1e-3)


def test_alpha_without_a_step_is_minus_one() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    runner = runner_for(model, task, preset="off", include=("alpha",), alpha_batch="same")
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    assert m["inst/alpha"] == -1.0
    nxt = runner_for(model, task, preset="off", include=("alpha",))  # next batch: a step later
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    assert train_step(model, task, batch, opt, nxt, 0) == {}
    assert train_step(model, task, batch, opt, nxt, 1) == {"inst/alpha": -1.0}


def test_concave_fit_gives_minus_one() -> None:
    from trainwell.instruments.alpha import alpha_from_observations

    # the loss keeps falling faster along the step: concave
    f0, f1 = torch.full((4,), 1.0), torch.full((4,), 0.5)
    df0, df1 = torch.full((4,), -0.1), torch.full((4,), -1.0)
    assert alpha_from_observations(1.0, f0, df0, f1, df1) == -1.0


def test_alpha_same_with_and_without_the_tasks_per_sample_losses() -> None:
    results = []
    for per_sample in (True, False):
        model, batch = mlp(seed=3), cls_batch(seed=4)
        task = ClsTask(per_sample=per_sample)
        runner = runner_for(model, task, preset="off", include=("alpha",), alpha_batch="same")
        m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.5), runner, 0)
        results.append(m["inst/alpha"])
    assert results[0] == pytest.approx(results[1], rel=1e-4, abs=1e-5)


def test_line_slopes_match_per_sample_directional_derivatives() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=5)
    fm = FunctionalModel(model, task)
    params = fm.live_params()
    torch.manual_seed(7)
    d = {n: torch.randn_like(p) for n, p in params.items()}
    losses, slopes = fm.line(params, batch, d)
    grads, ref_losses = fm.per_sample_grads(params, batch)
    ref = sum((grads[n] * d[n]).reshape(5, -1).sum(1) for n in d)
    torch.testing.assert_close(slopes, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses, ref_losses)


def test_alpha_from_per_sample_start_equals_alpha_from_two_lines() -> None:
    results = []
    for extra in ((), ("norm_test",)):  # norm_test makes the per-sample gradients available
        model, task, batch = mlp(seed=5), ClsTask(), cls_batch(seed=6)
        runner = runner_for(
            model, task, preset="off", include=("alpha", *extra), alpha_batch="same"
        )
        m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.7), runner, 0)
        results.append(m["inst/alpha"])
    assert results[0] == pytest.approx(results[1], rel=1e-4, abs=1e-5)


def _per_sample_line(model, task, batch, direction):  # noqa: ANN001, ANN202
    """Brute force: per-sample losses and slopes ∇ℓ_i·d by a loop over samples."""
    x, y = batch
    grads = brute_per_sample(model, task, batch)
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    slopes = torch.stack([sum((g[n] * direction[n]).sum() for n in g) for g in grads])
    return losses, slopes


def test_next_batch_alpha_is_cockpits_fit_across_two_batches() -> None:
    model, task = mlp(seed=8), ClsTask()
    b0, b1 = cls_batch(seed=10, n=9), cls_batch(seed=11, n=7)
    runner = runner_for(model, task, preset="off", include=("alpha",), every=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.8)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    start = copy.deepcopy(model)
    assert train_step(model, task, b0, opt, runner, 0) == {}  # the far end needs the next batch
    assert runner.due(1) and not runner.due(2)
    d = {n: p.detach() - theta0[n] for n, p in model.named_parameters()}
    t = float(torch.cat([v.reshape(-1) for v in d.values()]).norm())
    unit = {n: v / t for n, v in d.items()}
    f0, df0 = _per_sample_line(start, task, b0, unit)
    f1, df1 = _per_sample_line(model, task, b1, unit)  # θ_{t+1} on the next batch
    m = train_step(model, task, b1, opt, runner, 1)
    assert set(m) == {"inst/alpha"} and not runner.due(2)

    obs = np.array([f0.mean(), f1.mean(), df0.mean(), df1.mean()], dtype=float)
    var = np.array([f0.var(), f1.var(), df0.var(), df1.var()], dtype=float)
    phi = np.array([[1, 0, 0], [1, t, t * t], [0, 1, 0], [0, 1, 2 * t]])
    w0, w1, w2 = np.linalg.solve(phi.T @ np.diag(1 / var) @ phi, phi.T @ np.diag(1 / var) @ obs)
    expected = -1.0 if w2 <= 0 else 2 * t / (-w1 / w2) - 1
    assert m["inst/alpha"] == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_next_batch_alpha_equals_same_batch_alpha_when_the_batch_repeats() -> None:
    values = {}
    for mode in ("next", "same"):
        model, task, batch = mlp(seed=2), ClsTask(), cls_batch(seed=3)
        runner = runner_for(model, task, preset="off", include=("alpha",), alpha_batch=mode)
        opt = torch.optim.SGD(model.parameters(), lr=0.4)  # every = 1: step 1 measures too
        first = train_step(model, task, batch, opt, runner, 0)
        values[mode] = first["inst/alpha"] if mode == "same" else None
        if mode == "next":
            opt.param_groups[0]["lr"] = 0.0  # the follow-up step itself does not matter
            values[mode] = train_step(model, task, batch, opt, runner, 1)["inst/alpha"]
    assert values["next"] == pytest.approx(values["same"], rel=1e-4, abs=1e-5)


def test_alpha_from_single_samples_uses_the_variance_floor() -> None:
    """One sample per end has no spread: every observation gets the floor's weight, so the
    fit is the unweighted one through the four values."""
    from trainwell.instruments.alpha import alpha_from_observations

    t, f0, df0, f1, df1 = 0.5, 1.0, -2.0, 0.4, 0.6
    phi = np.array([[1, 0, 0], [1, t, t * t], [0, 1, 0], [0, 1, 2 * t]])
    w0, w1, w2 = np.linalg.lstsq(phi, np.array([f0, f1, df0, df1]), rcond=None)[0]
    expected = 2 * t / (-w1 / w2) - 1
    got = alpha_from_observations(t, *(torch.tensor([v], dtype=torch.float64) for v in (f0, df0, f1, df1)))
    assert got == pytest.approx(expected, rel=1e-9)
