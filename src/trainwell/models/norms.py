"""Normalisation layers that always compute in fp32, and ``make_norm`` to pick one by name.

Why fp32: mean and variance of bf16/fp16 activations lose most of their digits, and a
norm is cheap, so mixed-precision recipes keep norms in fp32 (the CUDA autocast policy
does the same for layer_norm). Each layer casts its input up and returns fp32; the next
matmul under autocast casts back down. Parameters are fp32 (autocast handles precision),
so ``x.float()`` is a no-op outside autocast and costs nothing there.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("none", "batch", "layer", "rms")


class LayerNorm(nn.LayerNorm):
    """LayerNorm (Ba et al. 2016) over the last dimension, computed in fp32."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.RMSNorm):
    """RMSNorm (Zhang & Sennrich 2019) over the last dimension, computed in fp32."""

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), self.normalized_shape, self.weight, self.eps)


class BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (B, C) features, computed in fp32. Uses batch statistics in train
    mode and the running averages in eval mode (so eval outputs do not depend on the batch)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float())


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over (B, C, H, W) feature maps, computed in fp32."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float())


class SampleNorm2d(nn.Module):
    """Layer or RMS norm of a (B, C, H, W) feature map over all of (C, H, W) per sample,
    with a per-channel gain (and shift for 'layer'): Ba et al.'s LayerNorm applied to
    conv features. Independent of the other samples in the batch, unlike BatchNorm."""

    def __init__(self, kind: Literal["layer", "rms"], channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.kind = kind
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if kind == "layer" else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()  # (B, C, H, W)
        if self.kind == "layer":
            # group_norm with one group is a LayerNorm over (C, H, W) with per-channel affine
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        x = F.rms_norm(x, x.shape[1:], eps=self.eps)
        return x * self.weight[:, None, None]


def make_norm(kind: str, dim: int, *, conv: bool = False, bias: bool = True) -> nn.Module:
    """A norm layer for features of size ``dim`` (channels when ``conv``): one of NORMS.

    ``bias`` only matters for 'layer' (the gpt turns LayerNorm biases off with model.bias).
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return BatchNorm2d(dim) if conv else BatchNorm1d(dim)
    if kind in ("layer", "rms"):
        if conv:
            return SampleNorm2d(kind, dim)  # type: ignore[arg-type]
        return LayerNorm(dim, bias=bias) if kind == "layer" else RMSNorm(dim)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")
