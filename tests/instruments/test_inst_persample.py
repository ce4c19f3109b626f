"""Per-sample gradients and everything computed from them, against a Python loop over samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from inst_helpers import (
    ClsTask,
    DictTask,
    brute_per_sample,
    cls_batch,
    flat,
    mlp,
    runner_for,
    train_step,
)

from trainwell.instruments.functional import FunctionalModel


def test_per_sample_grads_match_a_loop_over_samples() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    fm = FunctionalModel(model, task)
    grads, losses = fm.per_sample_grads(fm.live_params(), batch)
    ref = brute_per_sample(model, task, batch)
    for i, r in enumerate(ref):
        for n, g in r.items():
            torch.testing.assert_close(grads[n][i], g, rtol=1e-5, atol=1e-6)
    x, y = batch
    with torch.no_grad():
        torch.testing.assert_close(
            losses, torch.nn.functional.cross_entropy(model(x), y, reduction="none")
        )


def test_per_sample_grads_of_a_dict_batch_with_a_constant_entry() -> None:
    model, (x, y) = mlp(), cls_batch(n=5)
    batch = {"x": x, "y": y, "temperature": torch.tensor(2.0)}
    fm = FunctionalModel(model, DictTask())
    grads, _ = fm.per_sample_grads(fm.live_params(), batch)
    for i in range(5):
        model.zero_grad()
        one = {"x": x[i : i + 1], "y": y[i : i + 1], "temperature": torch.tensor(2.0)}
        out = DictTask().loss(model, one)
        (out.sum / out.count).backward()
        for n, p in model.named_parameters():
            torch.testing.assert_close(grads[n][i], p.grad, rtol=1e-5, atol=1e-6)


def _reference(model, task, batch):  # noqa: ANN001, ANN202
    gs = torch.stack([flat(g) for g in brute_per_sample(model, task, batch)]).double()  # (B, P)
    return gs, gs.mean(0)


def test_gradient_tests_match_their_definitions() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=10)
    gs, g = _reference(model, task, batch)
    b = gs.shape[0]
    runner = runner_for(
        model, task, preset="off", include=("norm_test", "inner_test", "ortho_test")
    )
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), runner, 0)

    g2 = g.dot(g)
    norm = math.sqrt(sum(float((gi - g).square().sum()) for gi in gs) / (b * (b - 1) * g2))
    inner = math.sqrt(sum(float((gi.dot(g) - g2) ** 2) for gi in gs) / (b * (b - 1) * g2**2))
    ortho = math.sqrt(
        sum(float((gi - gi.dot(g) / g2 * g).square().sum()) for gi in gs) / (b * (b - 1) * g2)
    )
    assert m["inst/norm_test"] == pytest.approx(norm, rel=1e-4)
    assert m["inst/inner_test"] == pytest.approx(inner, rel=1e-4)
    assert m["inst/ortho_test"] == pytest.approx(ortho, rel=1e-4)


def test_gsnr_cabs_early_stopping_and_one_batch_noise_scale_match_their_definitions() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=10)
    gs, g = _reference(model, task, batch)
    b = gs.shape[0]
    x, y = batch
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(x), y))
    names = ("mean_gsnr", "cabs", "early_stopping", "noise_scale_ps")
    runner = runner_for(model, task, preset="off", include=names)
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.3), runner, 0)

    second = gs.square().mean(0)  # (P,)
    gsnr = (g.square() / (second - g.square() + 1e-5)).mean()
    cabs = 0.3 * (second - g.square()).sum() / loss
    var = gs.var(0, unbiased=True)
    eb = 1 - b * (g.square() / (var + 1e-5)).mean()
    trace = var.sum()  # unbiased tr(Σ)
    b_simple = trace / (g.dot(g) - trace / b)
    assert m["inst/mean_gsnr"] == pytest.approx(float(gsnr), rel=1e-3)
    assert m["inst/cabs_sgd"] == pytest.approx(float(cabs), rel=1e-4)
    assert m["inst/early_stopping_sgd"] == pytest.approx(float(eb), rel=1e-4)
    assert m["inst/noise_scale_ps"] == pytest.approx(float(b_simple), rel=1e-4)
    assert any("cabs" in w and "SGD" in w for w in runner.warnings)


def test_per_sample_quantities_use_at_most_max_samples() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=12)
    x, y = batch
    gs = torch.stack([flat(g) for g in brute_per_sample(model, task, (x[:4], y[:4]))]).double()
    g = gs.mean(0)
    runner = runner_for(model, task, preset="off", include=("norm_test",), max_samples=4)
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), runner, 0)
    expect = math.sqrt(float((gs - g).square().sum()) / (4 * 3 * g.dot(g)))
    assert m["inst/norm_test"] == pytest.approx(expect, rel=1e-4)


def test_grad_hist1d_counts_match_numpy_with_clamping() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=8)
    with torch.no_grad():
        model[4].weight.mul_(40.0)  # push some per-sample gradients beyond the range
    gs = torch.stack([flat(g) for g in brute_per_sample(model, task, batch)])  # (B, P)
    runner = runner_for(
        model, task, preset="off", include=("grad_hist1d",), hist_samples=0, hist_range=0.5
    )
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    hist = runner.histograms()["grad_hist1d"][-1]
    values = gs.reshape(-1).numpy()
    ref, _ = np.histogram(np.clip(values, -0.5, 0.5 - 1e-7), bins=100, range=(-0.5, 0.5))
    # elements within float rounding of an edge may fall on either side
    assert np.abs(hist.counts.numpy() - ref).sum() <= 4
    assert int(hist.counts.sum()) == values.size
    assert float(np.mean(np.abs(values) >= 0.5)) > 0  # some were clamped into the edge bins
    assert m["inst/grad_hist1d/edge_frac"] == pytest.approx(
        (ref[0] + ref[-1]) / values.size, abs=1e-3
    )
    assert m["inst/grad_hist1d/std"] == pytest.approx(float(values.std()), rel=1e-3)
    per_layer = sum(
        runner.histograms()[f"grad_hist1d/{n}"][-1].counts for n, _ in model.named_parameters()
    )
    assert torch.equal(per_layer, hist.counts)


def test_grad_hist1d_bins_only_hist_samples() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=8)
    runner = runner_for(model, task, preset="off", include=("grad_hist1d",), hist_samples=3)
    train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    n_params = sum(p.numel() for p in model.parameters())
    assert int(runner.histograms()["grad_hist1d"][-1].counts.sum()) == 3 * n_params


def test_grad_hist2d_matches_numpy_histogram2d() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=6)
    with torch.no_grad():
        model[0].weight.mul_(8.0)  # some parameters beyond the (-2, 2) range
    gs = torch.stack([flat(g) for g in brute_per_sample(model, task, batch)])  # (B, P)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])  # (P,)
    runner = runner_for(model, task, preset="off", include=("grad_hist2d",), hist_samples=0)
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.1), runner, 0)
    hist = runner.histograms()["grad_hist2d"][-1]
    assert hist.counts.shape == (40, 50)
    gx = np.clip(gs.reshape(-1).numpy(), -1 + 1e-3, 1 - 1e-3)
    py = np.clip(theta.expand_as(gs).reshape(-1).numpy(), -2 + 1e-3, 2 - 1e-3)
    ref, _, _ = np.histogram2d(gx, py, bins=(40, 50), range=((-1, 1), (-2, 2)))
    assert np.abs(hist.counts.numpy() - ref).sum() <= 4
    assert m["inst/grad_hist2d/param_clamped_frac"] == pytest.approx(
        float((theta.abs() >= 2).float().mean())
    )
