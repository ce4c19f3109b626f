"""Per-sample gradient moments: the few reductions every per-sample instrument shares.

Notation (Cockpit's): g_i is the gradient of sample i's loss, g = (1/B) Σ_i g_i the batch
gradient, j runs over parameter elements. From one pass over the (B, P) per-sample
gradients we keep O(B + P) numbers, computed once per due step and cached in the context:

- ``mean``        g, per parameter tensor
- ``sample_sq``   ‖g_i‖² (B,), over all parameters
- ``sample_dot``  g_iᵀg (B,), over all parameters
- ``grad_sq``     ‖g‖²

NormTest, InnerTest, OrthoTest, CABS, TIC, the histogram's spread and the one-batch noise
scale are all closed-form in these (no Gram matrix, no second pass). MeanGSNR and
EarlyStopping also need the per-element second moment (1/B) Σ_i g_ij², computed on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainwell.instruments.base import Context


@dataclass
class GradMoments:
    n: int
    """B: samples measured."""
    mean: dict[str, Tensor]
    sample_sq: Tensor
    """(B,) ‖g_i‖²."""
    sample_dot: Tensor
    """(B,) g_iᵀg."""
    grad_sq: Tensor
    """0-d ‖g‖²."""

    def trace_sigma(self, unbiased: bool = True) -> Tensor:
        """tr(Σ̂) = Σ_j [(1/B) Σ_i g_ij² - g_j²] = (1/B) Σ_i ‖g_i‖² - ‖g‖², times B/(B-1)
        for the unbiased per-sample variance."""
        biased = self.sample_sq.mean() - self.grad_sq
        return biased * (self.n / (self.n - 1)) if unbiased else biased


def moments(ctx: Context) -> GradMoments:
    """The shared reductions of ``ctx.per_sample_grads`` (cached per step): three passes,
    each a BLAS-style kernel without a (B, P) temporary."""
    cached = ctx.cache.get("moments")
    if cached is not None:
        return cached
    psg = _per_sample(ctx)
    first = next(iter(psg.values()))
    n = first.shape[0]
    mean = {}
    sample_sq = torch.zeros(n, device=first.device)
    sample_dot = torch.zeros(n, device=first.device)
    for name, g in psg.items():
        flat = g.reshape(n, -1).float()  # (B, n_l)
        m = flat.mean(0)  # (n_l,)
        mean[name] = m.view(g.shape[1:])
        sample_sq += torch.linalg.vecdot(flat, flat)  # (B,) row-wise dots
        sample_dot += flat @ m  # (B,)
    grad_sq = torch.stack([m.square().sum() for m in mean.values()]).sum()
    out = GradMoments(n, mean, sample_sq, sample_dot, grad_sq)
    ctx.cache["moments"] = out
    return out


def element_second_moment(ctx: Context) -> dict[str, Tensor]:
    """(1/B) Σ_i g_ij² per parameter element (cached per step). Only the per-element
    quantities (MeanGSNR, EarlyStopping) need it; it costs a (B, n_l) temporary per tensor."""
    cached = ctx.cache.get("second_moment")
    if cached is not None:
        return cached
    psg = _per_sample(ctx)
    out = {name: g.float().square().mean(0) for name, g in psg.items()}
    ctx.cache["second_moment"] = out
    return out


def _per_sample(ctx: Context) -> dict[str, Tensor]:
    if ctx.per_sample_grads is None:
        raise RuntimeError(
            "per-sample moments need per_sample_grads: declare PER_SAMPLE in the instrument's needs"
        )
    return ctx.per_sample_grads
