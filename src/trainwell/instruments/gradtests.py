"""Gradient tests and the gradient signal-to-noise ratio, from per-sample gradients.

Notation: g_i per-sample gradient, g = (1/B) Σ g_i, B samples (see persample.py). Each
quantity is closed-form in the shared moments, so all of them together cost one pass over
the per-sample gradients.
"""

from __future__ import annotations

import torch

from trainwell.instruments.base import PER_SAMPLE, Context, Metrics, key
from trainwell.instruments.persample import element_second_moment, moments

GSNR_EPS = 1e-5
"""Stabiliser of MeanGSNR's denominator (Cockpit's value): elements with no variance."""


class NormTest:
    """Norm test (Byrd et al. 2012, "Sample size selection in optimization methods for
    machine learning", eq. 3.9): the largest θ for which the batch passes

        θ = sqrt( Σ_i ‖g_i − g‖² / (B (B−1) ‖g‖²) ),  Σ_i ‖g_i − g‖² = Σ_i ‖g_i‖² − B ‖g‖².

    Needs: per_sample_grads.
    Reading: the relative error of the batch gradient. θ ≲ 1 means the batch gradient
    points the right way; large values mean gradient noise dominates and the batch
    should grow (Cockpit's gradient-tests gauge).
    """

    name = "norm_test"
    needs = frozenset({PER_SAMPLE})

    def measure(self, ctx: Context) -> Metrics:
        m = moments(ctx)
        spread = m.sample_sq.sum() - m.n * m.grad_sq
        return {key(self.name): (spread / (m.n * (m.n - 1) * m.grad_sq)).clamp_min(0).sqrt()}


class InnerTest:
    """Inner-product test (Bollapragada et al. 2018, "Adaptive sampling strategies for
    stochastic optimization"): the spread of the per-sample gradients along g,

        θ = sqrt( Σ_i (g_iᵀg − ‖g‖²)² / (B (B−1) ‖g‖⁴) ).

    Needs: per_sample_grads.
    Reading: large values mean many samples disagree with the batch on whether the step
    goes downhill: a descent direction is not guaranteed; grow the batch.
    """

    name = "inner_test"
    needs = frozenset({PER_SAMPLE})

    def measure(self, ctx: Context) -> Metrics:
        m = moments(ctx)
        spread = (m.sample_dot - m.grad_sq).square().sum()
        return {key(self.name): (spread / (m.n * (m.n - 1) * m.grad_sq.square())).sqrt()}


class OrthoTest:
    """Orthogonality test (Bollapragada et al. 2018): the spread of the per-sample
    gradients orthogonal to g,

        ν = sqrt( Σ_i ‖g_i − (g_iᵀg / ‖g‖²) g‖² / (B (B−1) ‖g‖²) ),
        ‖g_i − (g_iᵀg/‖g‖²) g‖² = ‖g_i‖² − (g_iᵀg)² / ‖g‖².

    Needs: per_sample_grads.
    Reading: large values mean the batch direction is noisy sideways (the step wanders
    across the valley) even when it reliably points downhill.
    """

    name = "ortho_test"
    needs = frozenset({PER_SAMPLE})

    def measure(self, ctx: Context) -> Metrics:
        m = moments(ctx)
        spread = (m.sample_sq - m.sample_dot.square() / m.grad_sq).sum()
        return {key(self.name): (spread / (m.n * (m.n - 1) * m.grad_sq)).clamp_min(0).sqrt()}


class MeanGSNR:
    """Mean gradient signal-to-noise ratio (Liu et al. 2020, "Understanding why neural
    networks generalize well through GSNR of parameters"):

        mean_j  g_j² / ( (1/B) Σ_i g_ij² − g_j² + 1e-5 ).

    Needs: per_sample_grads. In no Cockpit preset (``instruments.include = ["mean_gsnr"]``).
    Reading: how consistently the samples agree on each parameter's direction. Higher
    correlates with a smaller generalisation gap; a falling GSNR late in training means
    the gradient is mostly per-sample noise (memorisation).
    """

    name = "mean_gsnr"
    needs = frozenset({PER_SAMPLE})

    def measure(self, ctx: Context) -> Metrics:
        m, second = moments(ctx), element_second_moment(ctx)
        total = torch.zeros((), device=m.grad_sq.device)
        count = 0
        for name, g in m.mean.items():
            g2 = g.float().square()
            total = total + (g2 / (second[name] - g2 + GSNR_EPS)).sum()
            count += g.numel()
        return {key(self.name): total / count}
