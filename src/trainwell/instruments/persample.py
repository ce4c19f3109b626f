"""Per-sample gradient moments: the few reductions every per-sample instrument shares.

Notation (Cockpit's): g_i is the gradient of sample i's loss, g = (1/B) Σ_i g_i the batch
gradient, j runs over parameter elements. From one pass over the (B, P) per-sample
gradients we keep O(B + P) numbers, computed once per due step and cached in the context:

- ``mean``        g, per parameter tensor
- ``sq_mean``     (1/B) Σ_i g_ij², per element (second moment; variance = sq_mean - g²)
- ``sample_sq``   ‖g_i‖² (B,), over all parameters
- ``sample_dot``  g_iᵀg (B,), over all parameters
- ``grad_sq``     ‖g‖²

NormTest, InnerTest, OrthoTest, MeanGSNR, CABS, EarlyStopping, TIC and the one-batch noise
scale are all closed-form in these (no Gram matrix, no second pass).
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
    sq_mean: dict[str, Tensor]
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
    """The shared reductions of ``ctx.per_sample_grads`` (cached per step)."""
    cached = ctx.cache.get("moments")
    if cached is not None:
        return cached
    psg = ctx.per_sample_grads
    if psg is None:
        raise RuntimeError(
            "moments() needs per_sample_grads: declare PER_SAMPLE in the instrument's needs"
        )
    n = next(iter(psg.values())).shape[0]
    mean, sq_mean = {}, {}
    first = next(iter(psg.values()))
    sample_sq = torch.zeros(n, device=first.device)
    sample_dot = torch.zeros(n, device=first.device)
    for name, g in psg.items():
        flat = g.reshape(n, -1).float()  # (B, n_l)
        m = flat.mean(0)  # (n_l,)
        mean[name] = m.view(g.shape[1:])
        sq = flat.square()  # (B, n_l)
        sq_mean[name] = sq.mean(0).view(g.shape[1:])
        sample_sq += sq.sum(1)
        sample_dot += flat @ m  # (B,)
    grad_sq = sum(
        (m.square().sum() for m in mean.values()), start=torch.zeros((), device=first.device)
    )
    out = GradMoments(n, mean, sq_mean, sample_sq, sample_dot, grad_sq)
    ctx.cache["moments"] = out
    return out
