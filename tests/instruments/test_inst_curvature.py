"""Hessian-vector products, λ_max, the Hutchinson trace and TIC against the dense Hessian."""

from __future__ import annotations

import math

import pytest
import torch
from inst_helpers import ClsTask, brute_per_sample, cls_batch, flat, runner_for, train_step
from torch import nn

from trainwell.instruments.functional import FunctionalModel


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))  # 31 parameters


def _dense_hessian(model: nn.Module, task: ClsTask, batch) -> torch.Tensor:  # noqa: ANN001
    fm = FunctionalModel(model, task)
    params = fm.live_params()
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def f(vec: torch.Tensor) -> torch.Tensor:
        parts = dict(
            zip(
                names,
                (v.view(s) for v, s in zip(vec.split(sizes), shapes, strict=True)),
                strict=True,
            )
        )
        return fm.mean_loss(parts, batch)

    x, y = batch
    batch = (x.double(), y)  # float64 reference: the parameters are swapped in as float64
    theta = torch.cat([p.reshape(-1) for p in params.values()]).double()
    return torch.autograd.functional.hessian(f, theta)


def test_hvp_matches_the_dense_hessian() -> None:
    model, task, batch = _tiny(), ClsTask(), cls_batch(n=8, d_in=3)
    h = _dense_hessian(model, task, batch).float()
    fm = FunctionalModel(model, task)
    params = fm.live_params()
    cur = fm.curvature(params, batch)
    torch.manual_seed(1)
    v = {n: torch.randn_like(p) for n, p in params.items()}
    hv = cur.hvp(v)
    torch.testing.assert_close(flat(hv), h @ flat(v), rtol=1e-4, atol=1e-5)
    many = {n: torch.stack([t, 2 * t]) for n, t in v.items()}
    hm = cur.hvp_many(many)
    torch.testing.assert_close(
        torch.cat([hm[n][1].reshape(-1) for n in hm]), 2 * (h @ flat(v)), rtol=1e-4, atol=1e-5
    )


def test_hess_max_ev_matches_eigvalsh() -> None:
    model, task, batch = _tiny(), ClsTask(), cls_batch(n=8, d_in=3)
    eig = torch.linalg.eigvalsh(_dense_hessian(model, task, batch))
    expected = float(eig[eig.abs().argmax()])  # power iteration finds the largest magnitude
    runner = runner_for(
        model, task, preset="off", include=("hess_max_ev",), hess_iters=500, hess_rtol=1e-7
    )
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    assert m["inst/hess_max_ev"] == pytest.approx(expected, rel=1e-3)
    assert 1 <= m["inst/hess_max_ev/iters"] <= 500


def test_hess_max_ev_with_the_default_budget_is_close() -> None:
    model, task, batch = _tiny(2), ClsTask(), cls_batch(n=8, d_in=3)
    eig = torch.linalg.eigvalsh(_dense_hessian(model, task, batch))
    expected = float(eig[eig.abs().argmax()])
    runner = runner_for(model, task, preset="off", include=("hess_max_ev",))
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    assert m["inst/hess_max_ev"] == pytest.approx(expected, rel=0.05)
    assert m["inst/hess_max_ev/iters"] <= 100


def test_hutchinson_trace_is_within_its_standard_error() -> None:
    model, task, batch = _tiny(), ClsTask(), cls_batch(n=8, d_in=3)
    h = _dense_hessian(model, task, batch)
    m_vectors = 200  # 5 standard errors below bound the check; more vectors only cost time
    runner = runner_for(model, task, preset="off", include=("hess_trace",), hess_samples=m_vectors)
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    # Var(zᵀHz) = 2 Σ_{i≠j} H_ij² for Rademacher z
    sigma = math.sqrt(2 * float(h.square().sum() - h.diagonal().square().sum()) / m_vectors)
    assert abs(m["inst/hess_trace"] - float(h.trace())) < 5 * sigma + 1e-6
    # per-layer blocks: the trace of each parameter's diagonal block
    sizes = [p.numel() for p in model.parameters()]
    start = 0
    for (n, _), size in zip(model.named_parameters(), sizes, strict=True):
        rows = h[start : start + size]  # (size, P)
        block = rows[:, start : start + size]
        # z_lᵀ(Hz)_l = z_lᵀ H_ll z_l + Σ_{k≠l} z_lᵀ H_lk z_k: both parts add variance
        within = 2 * float(block.square().sum() - block.diagonal().square().sum())
        across = float(rows.square().sum() - block.square().sum())
        sigma_b = math.sqrt((within + across) / m_vectors)
        assert abs(m[f"inst/hess_trace/{n}"] - float(block.trace())) < 5 * sigma_b + 1e-6
        start += size
    assert sum(m[f"inst/hess_trace/{n}"] for n, _ in model.named_parameters()) == pytest.approx(
        m["inst/hess_trace"], rel=1e-5
    )


def test_tic_uses_the_per_sample_second_moment_over_the_trace() -> None:
    model, task, batch = _tiny(), ClsTask(), cls_batch(n=8, d_in=3)
    h = _dense_hessian(model, task, batch)
    gs = torch.stack([flat(g) for g in brute_per_sample(model, task, batch)]).double()
    second = float(gs.square().mean(0).sum())
    runner = runner_for(model, task, preset="off", include=("tic", "hess_trace"), hess_samples=64)
    m = train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    # TIC shares the Hutchinson estimate with HessTrace: exact given that estimate
    assert m["inst/tic"] == pytest.approx(second / (m["inst/hess_trace"] + 1e-7), rel=1e-4)
    sigma = math.sqrt(2 * float(h.square().sum() - h.diagonal().square().sum()) / 64)
    assert m["inst/hess_trace"] == pytest.approx(float(h.trace()), abs=5 * sigma)


def test_curvature_probes_are_reproducible() -> None:
    values = []
    for _ in range(2):
        model, task, batch = _tiny(), ClsTask(), cls_batch(n=8, d_in=3)
        runner = runner_for(model, task, preset="off", include=("hess_trace", "hess_max_ev"))
        values.append(
            train_step(model, task, batch, torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
        )
    assert values[0] == values[1]
