"""Alpha: where along the valley the last step landed (Cockpit's effective relative step size)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.modules.dropout import _DropoutNd

from trainwell.instruments.base import (
    PER_SAMPLE_FREE,
    UPDATE,
    Context,
    Metrics,
    key,
    update_diff,
    update_sq_norms,
)

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
    the parabola is at ᾱ = −w₁/w₂ and (Schneider, Dangel & Hennig 2021, "Cockpit", and
    its ``alpha.py``)

        α = 2t/ᾱ − 1;   α = −1 for a concave fit or no step (t = 0).

    ``batch="next"`` (default, Cockpit's definition): f(0), f′(0) come from this step's
    mini-batch at θ_t and f(t), f′(t) from the *next* step's mini-batch at θ_{t+1}, so the
    value is reported one step later (the runner makes that step due for it). The
    mini-batch noise is part of the reading: Cockpit's guidance below refers to this one.
    ``batch="same"``: both ends on the same samples, right after the update: smoother, no
    follow-up step, and lower than Cockpit's α (a fresh batch at θ_{t+1} usually sits
    higher on its own loss). The slopes f′ = ∇ℓ_i·d/‖d‖ come per sample from two reverse
    passes.

    Needs: update (and the batch), per-sample gradients where they are free. Cost: where
    the training backward yields per-sample gradients (capture.py: models of Linear, norm
    and embedding layers) both ends come from the training steps themselves: a small
    matrix product per layer and end, no extra pass. Otherwise one forward
    and two backward passes at θ_{t+1}, the same again at θ_t unless per-sample gradients
    are measured anyway (economy).
    Reading: −1 no step, 0 the step landed on the valley floor, 1 on the opposite wall at
    the same height, > 1 the loss went up. α > 0 is overshooting, and mild overshooting
    is what good runs do: in Cockpit's learning-rate study the best test accuracy came
    consistently from runs with a median α somewhat above 0, never from α ≈ 0. Read the
    distribution over many steps, not one value.
    """

    name = "alpha"
    needs = frozenset({UPDATE, PER_SAMPLE_FREE})  # its start point, where the backward offers it
    norms = ("update",)

    def __init__(self, batch: str = "next") -> None:
        if batch not in ("next", "same"):
            raise ValueError(f"Alpha(batch=...) must be 'next' or 'same', got {batch!r}")
        self.batch = batch
        self._start: tuple[float, dict[str, Tensor], Tensor, Tensor] | None = None
        """(t, d = θ_{t+1} − θ_t, f_i(0), f_i′(0)) of a step whose far end awaits the next batch."""

    @property
    def slope_direction(self) -> dict[str, Tensor] | None:
        """d = θ_{t+1} − θ_t while the far end awaits the next batch: the runner may then
        sum that step's per-sample slopes along it during its own backward (slopes.py)."""
        start = self._start
        return start[1] if start is not None and start[0] > 0.0 else None

    @property
    def pending(self) -> bool:
        """Whether the next step must be measured to finish this α (``batch="next"``)."""
        return self._start is not None

    def measure(self, ctx: Context) -> Metrics:
        before, after = ctx.params_before, ctx.params_after
        assert before is not None and after is not None
        _, sq = update_sq_norms(ctx)
        t = float(sq.sum().sqrt())  # one host sync: a zero step (LR 0 in warm-up) has no line
        if t == 0.0:
            if self.batch == "next":  # reported one step later like every other value
                self._start = (0.0, {}, torch.zeros(0), torch.zeros(0))
                return {}
            return {key(self.name): -1.0}
        diff = update_diff(ctx)
        # the same dropout masks at both ends of the line (the runner restores the RNG after)
        seed = SEED_BASE + ctx.step
        if _start_from_per_sample(ctx, self.batch):
            # the start point is free: the per-sample gradients at θ_t are already there
            assert ctx.per_sample is not None and ctx.per_sample_losses is not None
            f0, df0 = ctx.per_sample_losses, ctx.per_sample.project(diff) / t  # g_iᵀd / ‖d‖
        else:
            torch.manual_seed(seed)
            f0, df0 = ctx.fn.line(before, ctx.samples, _unit(diff, t))
        if self.batch == "next":
            self._start = (t, diff, f0, df0)
            return {}
        torch.manual_seed(seed)
        f1, df1 = ctx.fn.line(after, ctx.samples, _unit(diff, t))
        return {key(self.name): alpha_from_observations(t, f0, df0, f1, df1)}

    def follow_up(self, ctx: Context) -> Metrics:
        """At the next step, before its update: the far end on the new batch at θ_{t+1}."""
        start, self._start = self._start, None
        if start is None or ctx.params_before is None:
            return {}
        t, diff, f0, df0 = start
        if t == 0.0:
            return {key(self.name): -1.0}
        if ctx.slopes is not None:  # the new batch's training step summed g_iᵀd itself
            f1, df1 = ctx.slopes[0], ctx.slopes[1] / t
        elif _from_training(ctx):  # the new batch's training backward already measured θ_{t+1}
            assert ctx.per_sample is not None and ctx.per_sample_losses is not None
            f1, df1 = ctx.per_sample_losses, ctx.per_sample.project(diff) / t
        else:
            f1, df1 = ctx.fn.line(ctx.params_before, ctx.samples, _unit(diff, t))
        return {key(self.name): alpha_from_observations(t, f0, df0, f1, df1)}


def _unit(diff: dict[str, Tensor], t: float) -> dict[str, Tensor]:
    """d/‖d‖, for the line search (the per-sample slopes divide their projections instead)."""
    return dict(zip(diff, torch._foreach_div(list(diff.values()), t), strict=True))


def _from_training(ctx: Context) -> bool:
    """The context's per-sample losses and gradients come from the training step itself
    (capture.py): this update's batch at θ_t, dropout masks and all."""
    return (
        ctx.per_sample is not None
        and ctx.per_sample_losses is not None
        and ctx.per_sample.source == "backward"
    )


def _start_from_per_sample(ctx: Context, batch: str) -> bool:
    """Per-sample gradients (when another instrument asked for them) give f(0) and f'(0) at
    no cost, unless the two ends would then see different functions: BatchNorm (per-sample
    runs it on running statistics) or active dropout (other masks than the line's). From
    the training backward they serve Cockpit's next-batch α (its far end is the next
    training step, measured the same way), not the same-batch one (other samples than
    the line's)."""
    if ctx.per_sample is None or ctx.per_sample_losses is None or ctx.fn.batchnorms:
        return False
    if ctx.per_sample.source == "backward":
        return batch == "next"
    return not any(
        isinstance(m, _DropoutNd) and m.p > 0 and m.training for m in ctx.model.modules()
    )


def fit_quadratic(t: float, fs: Tensor, dfs: Tensor, var_fs: Tensor, var_dfs: Tensor) -> Tensor:
    """Weighted least squares fit of w₀ + w₁τ + w₂τ² to f(0), f(t) (``fs``) and f′(0),
    f′(t) (``dfs``) with variances ``var_fs``, ``var_dfs``; returns (w₀, w₁, w₂) in float64."""
    f, df, vf, vdf = (x.detach().to("cpu", torch.float64).reshape(2).tolist() for x in (fs, dfs, var_fs, var_dfs))
    v0, v1, v2 = _fit(t, f, df, vf, vdf)
    return torch.tensor([v0, v1 / t, v2 / (t * t)], dtype=torch.float64)


def _fit(t: float, fs: list[float], dfs: list[float], var_fs: list[float], var_dfs: list[float]) -> list[float]:
    """(v₀, v₁, v₂) of f(st) ≈ v₀ + v₁s + v₂s² in the step's own unit s = τ/t (so the
    system stays well conditioned however short the step; w₁ = v₁/t, w₂ = v₂/t²): the
    weighted normal equations of the four observations, solved in float64 on the host (a
    3 x 3 system: plain Python beats a LAPACK call here by a wide margin)."""
    rows = ((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 1.0, 0.0), (0.0, 1.0, 2.0))
    ys = (fs[0], fs[1], dfs[0] * t, dfs[1] * t)  # slopes in units of s: t f′
    # weight 1/variance, in the units of each observation (a slope's residual is divided by t)
    ws = [1.0 / max(v, VAR_FLOOR) for v in var_fs] + [1.0 / (max(v, VAR_FLOOR) * t * t) for v in var_dfs]
    a = [[sum(w * r[i] * r[j] for w, r in zip(ws, rows, strict=True)) for j in range(3)] for i in range(3)]
    b = [sum(w * y * r[i] for w, y, r in zip(ws, ys, rows, strict=True)) for i in range(3)]
    return _solve3(a, b)


def _solve3(a: list[list[float]], b: list[float]) -> list[float]:
    """x with a x = b for a symmetric positive definite 3 x 3 ``a`` (Gaussian elimination
    with partial pivoting)."""
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, 3):
            f = m[r][col] / m[col][col]
            m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
    x = [0.0, 0.0, 0.0]
    for r in (2, 1, 0):
        x[r] = (m[r][3] - sum(m[r][c] * x[c] for c in range(r + 1, 3))) / m[r][r]
    return x


def alpha_from_observations(t: float, f0: Tensor, df0: Tensor, f1: Tensor, df1: Tensor) -> float:
    """α from per-sample losses and slopes at both ends of a step of length t (the two
    ends may hold different samples: Cockpit's next-batch variant). Means and unbiased
    variances in one reduction per end, read to the host at once; the fit there, in float64."""
    ends = [torch.stack([f0.detach().reshape(-1), df0.detach().reshape(-1)]),
            torch.stack([f1.detach().reshape(-1), df1.detach().reshape(-1)])]
    if ends[0].shape[1] == ends[1].shape[1]:
        ends = [torch.cat(ends)]
    # unbiased, as Cockpit; a single sample has no spread (the floor then applies)
    moments = [torch.var_mean(e.double(), dim=1, correction=int(e.shape[1] > 1)) for e in ends]
    var, mean = (torch.cat([m[i] for m in moments]).tolist() for i in (0, 1))
    _, v1, v2 = _fit(t, [mean[0], mean[2]], [mean[1], mean[3]], [var[0], var[2]], [var[1], var[3]])
    if not v2 > 0:  # concave (or flat) along the step: still going downhill at the far end
        return -1.0
    if v1 == 0.0:  # the step started at the minimum of the fit: any step overshoots
        return float("inf")
    # the parabola's opposite wall at ᾱ = −w₁/w₂ = −v₁t/v₂, and α = 2t/ᾱ − 1
    return -2.0 * v2 / v1 - 1.0
