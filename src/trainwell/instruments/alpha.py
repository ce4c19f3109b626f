"""Alpha: where along the valley the last step landed (Cockpit's effective relative step size)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.modules.dropout import _DropoutNd

from trainwell.instruments.base import UPDATE, Context, Metrics, key, sq_norm

VAR_FLOOR = 1e-10
"""A zero variance (one sample, or a loss that does not vary) would give an infinite
weight; Cockpit substitutes this small value."""

SEED_BASE = 0x5EED
"""Seed of the dropout masks used along the line (offset by the step)."""


class Alpha:
    """α: a quadratic fitted along the step tells whether the step undershot or overshot.

    Along the update direction d = θ_{t+1} − θ_t (any optimizer), with t = ‖d‖ and
    f(τ) = L(θ_t + τ d/‖d‖), fit f(τ) ≈ w₀ + w₁τ + w₂τ² by weighted least squares to four
    observations: f(0), f(t), f′(0), f′(t), each the mean over the measured samples and
    weighted by the inverse variance of its per-sample values. Then the opposite wall of
    the parabola is at ᾱ = −w₁/w₂ and (Schneider, Dangel & Hennig 2021, "Cockpit", eq. in
    §3; ``alpha.py``)

        α = 2t/ᾱ − 1;   α = −1 for a concave fit or no step (t = 0).

    Difference from Cockpit: Cockpit observes f(t), f′(t) on the *next* mini-batch; here
    both ends are evaluated on the *same* samples (θ_t and θ_{t+1} are both known after the
    update), which removes batch-to-batch noise from the fit and needs no second scheduled
    step. The slopes f′ = ∇ℓ_i·d/‖d‖ come per sample from two reverse passes.

    Needs: update (and the batch). Cost: one forward and two backward passes at θ_{t+1},
    the same again at θ_t unless per-sample gradients are measured anyway (economy).
    Reading: −1 no step, 0 the step landed on the valley floor, 1 on the opposite wall at
    the same height, > 1 the loss went up. α > 0 is overshooting, and mild overshooting
    is what good runs do: in Cockpit's learning-rate study the best test accuracy came
    consistently from runs with a median α somewhat above 0, never from α ≈ 0.
    """

    name = "alpha"
    needs = frozenset({UPDATE})

    def measure(self, ctx: Context) -> Metrics:
        before, after = ctx.params_before, ctx.params_after
        assert before is not None and after is not None
        names = list(before)
        d = dict(
            zip(
                names,
                torch._foreach_sub([after[n] for n in names], [before[n] for n in names]),
                strict=True,
            )
        )
        t = float(sq_norm(d).sqrt())  # one host sync: a zero step (LR 0 in warm-up) has no line
        if t == 0.0:
            return {key(self.name): -1.0}
        direction = {n: v / t for n, v in d.items()}
        # the same dropout masks at both ends of the line (the runner restores the RNG after)
        seed = SEED_BASE + ctx.step
        if _start_from_per_sample(ctx):
            # the start point is free: the per-sample gradients at θ_t are already there
            psg, n = ctx.per_sample_grads, ctx.per_sample_losses.shape[0]
            f0 = ctx.per_sample_losses
            df0 = sum(
                psg[k].reshape(n, -1) @ direction[k].reshape(-1).to(psg[k].dtype) for k in names
            )
        else:
            torch.manual_seed(seed)
            f0, df0 = ctx.fn.line(before, ctx.samples, direction)
        torch.manual_seed(seed)
        f1, df1 = ctx.fn.line(after, ctx.samples, direction)
        return {key(self.name): alpha_from_observations(t, f0, df0, f1, df1)}


def _start_from_per_sample(ctx: Context) -> bool:
    """Per-sample gradients (when another instrument asked for them) give f(0) and f'(0) at
    no cost, unless the two ends would then see different functions: BatchNorm (per-sample
    runs it on running statistics) or active dropout (other masks than the line's)."""
    if ctx.per_sample_grads is None or ctx.per_sample_losses is None or ctx.fn.batchnorms:
        return False
    return not any(
        isinstance(m, _DropoutNd) and m.p > 0 and m.training for m in ctx.model.modules()
    )


def fit_quadratic(t: float, fs: Tensor, dfs: Tensor, var_fs: Tensor, var_dfs: Tensor) -> Tensor:
    """Weighted least squares fit of w₀ + w₁τ + w₂τ² to f(0), f(t) (``fs``) and f′(0),
    f′(t) (``dfs``) with variances ``var_fs``, ``var_dfs``; returns (w₀, w₁, w₂) in float64."""
    dt = torch.float64
    phi = torch.tensor(
        [[1.0, 0.0, 0.0], [1.0, t, t * t], [0.0, 1.0, 0.0], [0.0, 1.0, 2.0 * t]], dtype=dt
    )
    y = torch.cat([fs.to(dt).reshape(2), dfs.to(dt).reshape(2)]).cpu()
    var = (
        torch.cat([var_fs.to(dt).reshape(2), var_dfs.to(dt).reshape(2)]).cpu().clamp_min(VAR_FLOOR)
    )
    w = var.rsqrt()  # (4,) row weights sqrt(1/var)
    return torch.linalg.lstsq(phi * w[:, None], (y * w)[:, None]).solution.reshape(3)


def alpha_from_observations(t: float, f0: Tensor, df0: Tensor, f1: Tensor, df1: Tensor) -> float:
    """α from per-sample losses (B,) and slopes (B,) at both ends of a step of length t."""
    fs = torch.stack([f0.float().mean(), f1.float().mean()])
    dfs = torch.stack([df0.float().mean(), df1.float().mean()])
    n = f0.numel()
    zero = torch.zeros((), device=f0.device)
    var_fs = (
        torch.stack([f0.float().var(), f1.float().var()]) if n > 1 else torch.stack([zero, zero])
    )
    var_dfs = (
        torch.stack([df0.float().var(), df1.float().var()]) if n > 1 else torch.stack([zero, zero])
    )
    w0, w1, w2 = fit_quadratic(t, fs, dfs, var_fs, var_dfs).tolist()
    if not w2 > 0:  # concave (or flat) along the step: still going downhill at the far end
        return -1.0
    if w1 == 0.0:  # the step started at the minimum of the fit: any step overshoots
        return float("inf")
    alpha_bar = -w1 / w2
    return 2.0 * t / alpha_bar - 1.0
