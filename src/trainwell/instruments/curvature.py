"""Curvature of the batch loss at θ_t, from Hessian-vector products (no Hessian is formed).

The context's ``curvature`` builds the gradient once with a graph and answers each
Hessian-vector product with one more backward pass (functional.py). Random vectors come
from a private generator seeded by the step, so measurements are reproducible and the
training RNG is never consumed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainwell.instruments.base import HVP, PER_SAMPLE, Context, Metrics, key
from trainwell.instruments.persample import moments

SEED_BASE = 0xC0FFEE
"""Seed of the random probe vectors (offset by the step)."""

TIC_EPS = 1e-7
"""Stabiliser of TIC's denominator (Cockpit's value)."""


def _generator(ctx: Context, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(SEED_BASE + ctx.step)


def hutchinson(ctx: Context, samples: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Hutchinson's estimate of tr(H) and of each parameter tensor's diagonal block:
    tr(H) ≈ (1/m) Σ_k z_kᵀ H z_k with Rademacher z_k (Hutchinson 1989), all m products in
    one batched backward pass. Cached per step (HessTrace and TIC share it)."""
    cached = ctx.cache.get("hutchinson")
    if cached is not None:
        return cached
    cur = ctx.curvature
    assert cur is not None
    params = ctx.params_before or {}
    first = next(iter(params.values()))
    gen = _generator(ctx, first.device)
    zs = {
        n: torch.randint(0, 2, (samples, *p.shape), generator=gen, device=p.device).to(p.dtype) * 2
        - 1
        for n, p in params.items()
    }
    hz = cur.hvp_many(zs)
    layers = {n: (zs[n] * hz[n]).reshape(samples, -1).sum(1).mean() for n in zs}
    total = torch.stack(list(layers.values())).sum()
    ctx.cache["hutchinson"] = (total, layers)
    return total, layers


class HessTrace:
    """tr(H) of the batch loss at θ_t, globally and per parameter tensor, by Hutchinson's
    estimator with ``hess_samples`` Rademacher vectors (Cockpit's HessTrace computes the
    exact diagonal with BackPACK, which limits it to supported layers; this works for any
    model autograd can double-differentiate).

    Needs: hvp. Cost: one forward, one backward with graph, one batched backward.
    Reading: the average curvature. A rising trace means the run walks into a narrowing
    valley (sharpening; with a fixed LR that ends in instability); a falling trace late
    in training means a wider basin.
    """

    name = "hess_trace"
    needs = frozenset({HVP})

    def __init__(self, samples: int = 8, per_layer: bool = True) -> None:
        self.samples, self.per_layer = samples, per_layer

    def measure(self, ctx: Context) -> Metrics:
        total, layers = hutchinson(ctx, self.samples)
        out: Metrics = {key(self.name): total}
        if self.per_layer:
            out.update({key(self.name, n): v for n, v in layers.items()})
        return out


class HessMaxEV:
    """λ_max: the Hessian eigenvalue of largest magnitude of the batch loss at θ_t, by power
    iteration on Hessian-vector products (at most ``hess_iters`` iterations, stopping when
    the Rayleigh quotient changes by less than ``hess_rtol`` relatively; Cockpit's
    HessMaxEV: 100 and 1e-3). Also reports ``inst/hess_max_ev/iters``.

    Needs: hvp. Cost: one forward and up to hess_iters + 1 backward passes with the graph
    kept alive: the most expensive instrument (full preset only).
    Reading: the sharpness. Gradient descent is stable only while lr · λ_max < 2 (for SGD;
    "edge of stability", Cohen et al. 2021): a λ_max rising towards 2/lr predicts a loss
    spike. With the trace it gives a rough condition-number proxy (λ_max · P / tr H).
    """

    name = "hess_max_ev"
    needs = frozenset({HVP})

    def __init__(self, iters: int = 100, rtol: float = 1e-3) -> None:
        self.iters, self.rtol = iters, rtol

    def measure(self, ctx: Context) -> Metrics:
        cur, params = ctx.curvature, ctx.params_before
        assert cur is not None and params is not None
        gen = _generator(ctx, next(iter(params.values())).device)
        v = {
            n: torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
            for n, p in params.items()
        }
        v = _normalised(v)
        lam, prev, used = 0.0, None, 0
        while used < self.iters:
            used += 1
            hv = cur.hvp(v)
            rayleigh = sum((v[n] * hv[n]).sum() for n in v)  # v is a unit vector
            lam, norm = torch.stack([rayleigh.float(), _norm(hv)]).tolist()  # one host sync
            if norm == 0.0:  # v is in the null space: all eigenvalues along it are 0
                break
            v = {n: t / norm for n, t in hv.items()}
            if prev is not None and abs(lam - prev) <= self.rtol * abs(lam):
                break
            prev = lam
        return {key(self.name): lam, key(self.name, "iters"): float(used)}


class TIC:
    """Takeuchi information criterion, trace variant (Thomas et al. 2019, "On the
    interplay between noise and curvature and its effect on optimization and
    generalization"; Cockpit's TICTrace):

        TIC ≈ Σ_j (1/B) Σ_i g_ij²  /  (tr(H) + 1e-7),

    the trace of the per-sample gradients' second moment over the Hutchinson trace of
    the Hessian (shared with HessTrace when both run).

    Needs: per_sample_grads, hvp.
    Reading: a proxy of the generalisation gap, meaningful near a minimum only: gradient
    noise large relative to curvature there means the solution depends on the particular
    samples seen. Compare runs at the same stage, not steps within one run's start.
    """

    name = "tic"
    needs = frozenset({PER_SAMPLE, HVP})

    def __init__(self, samples: int = 8) -> None:
        self.samples = samples

    def measure(self, ctx: Context) -> Metrics:
        m = moments(ctx)
        trace, _ = hutchinson(ctx, self.samples)
        second = m.sample_sq.mean()  # Σ_j (1/B) Σ_i g_ij² = (1/B) Σ_i ‖g_i‖²
        return {key(self.name): second / (trace + TIC_EPS)}


def _norm(v: dict[str, Tensor]) -> Tensor:
    return torch.stack([t.float().square().sum() for t in v.values()]).sum().sqrt()


def _normalised(v: dict[str, Tensor]) -> dict[str, Tensor]:
    norm = _norm(v)
    return {n: t / norm for n, t in v.items()}
