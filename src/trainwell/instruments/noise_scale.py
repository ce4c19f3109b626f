"""The gradient noise scale B_simple (McCandlish, Kaplan, Amodei et al. 2018, "An empirical
model of large-batch training", arXiv 1812.06162).

With G the true gradient and Σ the per-sample gradient covariance, E|G_B|² = |G|² + tr(Σ)/B,
and

    B_simple = tr(Σ) / |G|²

is the batch size at which gradient noise and signal are equal: the critical batch size
B_crit ≈ B_noise ≈ B_simple (equal when the Hessian is isotropic) beyond which a larger
batch buys almost no fewer steps. It grows as the loss falls.

Both estimators average the numerator tr(Σ) and the denominator |G|² separately with an
EMA and only then divide (as gpt-neox does), because each single-step estimate of |G|² is
unbiased but noisy and can be negative; non-finite estimates are skipped. The EMAs'
bias corrections cancel in the ratio.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.instruments.base import MICRO, PER_SAMPLE, Context, Metrics, MicroGrads, key
from trainwell.instruments.persample import moments


class MicroTracker:
    """Reduces the micro-batch gradients of one update, as accumulation produces them, to
    what the two-batch estimator needs (``MicroGrads``), without a copy per tensor: the
    running sum of the gradients is kept as one flat copy, and micro-batch i's own
    gradient is the difference of two of them."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.prev: Tensor | None = None
        """.grad after the last micro-batch, flattened (a copy): the running sum."""
        self.factor: Tensor | None = None
        self.sq_norms: list[Tensor] = []
        self.counts: list[Tensor] = []

    def add(self, params: list[nn.Parameter], count: Tensor | float, grad_factor: Tensor | float) -> None:
        """After a micro-batch's backward: ``.grad`` = grad_factor × Σ_{j≤i} ∇(loss sum j)."""
        with torch.no_grad():
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
            diff = (flat if self.prev is None else flat - self.prev).float()
            f = torch.as_tensor(grad_factor, dtype=torch.float32, device=flat.device)
            c = torch.as_tensor(count, dtype=torch.float32, device=flat.device)
            self.sq_norms.append(diff.dot(diff) / (f * c).square())  # |G_small,i|² of the mean gradient
        self.counts.append(c)
        self.prev, self.factor = flat, f

    def take(self) -> MicroGrads | None:
        if self.prev is None or self.factor is None:
            return None
        total = torch.stack(self.counts).sum()
        prev = self.prev.float()
        return MicroGrads(self.sq_norms, self.counts, prev.dot(prev) / (self.factor * total).square(), total)


ACCUMULATE_NOTE = (
    "noise_scale: the two-batch estimator needs gradient accumulation (train.accumulate >= 2) "
    "to see micro-batch gradients for free; without it use noise_scale_ps (per-sample)"
)


class _SeparateEMA:
    """EMAs of the noise scale's numerator and denominator; named, checkpointable state."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.trace = 0.0
        self.grad_sq = 0.0
        self.updates = 0

    def update(self, trace: float, grad_sq: float) -> None:
        if not (math.isfinite(trace) and math.isfinite(grad_sq)):
            return  # an fp16 overflow or a NaN step says nothing about the noise
        self.trace = self.beta * self.trace + (1 - self.beta) * trace
        self.grad_sq = self.beta * self.grad_sq + (1 - self.beta) * grad_sq
        self.updates += 1

    def report(self, name: str) -> Metrics:
        if self.updates == 0:
            return {}
        debias = 1 - self.beta**self.updates
        ratio = self.trace / self.grad_sq if self.grad_sq != 0 else math.inf
        return {
            key(name): ratio,
            key(name, "trace_sigma"): self.trace / debias,
            key(name, "grad_sq"): self.grad_sq / debias,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "grad_sq": self.grad_sq, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trace = float(state["trace"])
        self.grad_sq = float(state["grad_sq"])
        self.updates = int(state["updates"])


class GradNoiseScale:
    """B_simple from the micro-batches of gradient accumulation, at no extra backward
    (McCandlish et al. 2018, App. A.1, two-batch estimator). For each micro-batch i of
    B_small = b_i targets and the whole update of B_big targets:

        |G|²  ≈ (B_big |G_big|² − b_i |G_small,i|²) / (B_big − b_i)
        tr(Σ) ≈ (|G_small,i|² − |G_big|²) / (1/b_i − 1/B_big)

    averaged over the micro-batches, then EMA'd separately (``noise_ema``). Keys:
    ``inst/noise_scale`` (= B_simple, in the unit of ``LossOutput.count``: samples or
    tokens), ``inst/noise_scale/trace_sigma``, ``inst/noise_scale/grad_sq``.

    Needs: micro_grads (``train.accumulate >= 2``; the loop reports each micro-batch to the
    runner). Cost: one copy and one norm of the gradient per micro-batch on due steps.
    Reading: B_simple well above the batch in use: a larger batch would train in fewer
    steps at nearly the same total compute; well below it: the batch wastes compute (fewer
    samples per step would make as much progress per sample). Negative or very large
    values mean the gradient signal is still below the noise of this batch.
    """

    name = "noise_scale"
    needs = frozenset({MICRO})

    def __init__(self, beta: float = 0.9, quiet: bool = False) -> None:
        self.ema = _SeparateEMA(beta)
        self.quiet = quiet
        """No note without accumulation (when a preset, not the user, asked for it)."""

    def measure(self, ctx: Context) -> Metrics:
        mg = ctx.micro_grads
        if mg is None or len(mg.sq_norms) < 2:
            if not self.quiet:
                ctx.notes.append(ACCUMULATE_NOTE)
            return {}
        big_n, big_sq = mg.total.float(), mg.big_sq_norm.float()
        grad_sq, trace = [], []
        for s, b in zip(mg.sq_norms, mg.counts, strict=True):
            b = b.float()
            grad_sq.append((big_n * big_sq - b * s) / (big_n - b))
            trace.append((s - big_sq) / (1 / b - 1 / big_n))
        g2, tr = torch.stack([torch.stack(grad_sq).mean(), torch.stack(trace).mean()]).tolist()
        self.ema.update(tr, g2)
        return self.ema.report(self.name)

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


class GradNoiseScalePerSample:
    """B_simple from one batch of per-sample gradients (the one-batch estimator):

        tr(Σ) ≈ B/(B−1) · ((1/B) Σ_i ‖g_i‖² − ‖g‖²)    (unbiased per-sample variance)
        |G|²  ≈ ‖g‖² − tr(Σ)/B

    (the two-batch estimator with B_small = 1 and B_big = B), EMA'd separately
    (``noise_ema``). Keys: ``inst/noise_scale_ps`` (= B_simple, in samples),
    ``inst/noise_scale_ps/trace_sigma``, ``inst/noise_scale_ps/grad_sq``.

    Needs: per_sample_grads. Reading: as ``noise_scale``; it works without gradient
    accumulation, measured on the first ``max_samples`` samples.
    """

    name = "noise_scale_ps"
    needs = frozenset({PER_SAMPLE})

    def __init__(self, beta: float = 0.9) -> None:
        self.ema = _SeparateEMA(beta)

    def measure(self, ctx: Context) -> Metrics:
        m = moments(ctx)
        tr_t = m.trace_sigma(unbiased=True)
        tr, g2 = torch.stack([tr_t, m.grad_sq - tr_t / m.n]).tolist()
        self.ema.update(tr, g2)
        return self.ema.report(self.name)

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)
