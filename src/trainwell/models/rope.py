"""Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer").

Each pair of features (i, i + D/2) of a query or key at position t is rotated by the angle
t * base^(-2i/D). The dot product of a query at t and a key at s then depends on t - s
only, so attention sees relative positions, with nothing added to the residual stream.
Written by hand because torch has no rotary layer; the half-split pairing is the
GPT-NeoX layout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ROPE_BASE = 10000.0
"""Wavelength base of RoFormer and most LLMs: wavelengths from 2*pi to about 2*pi*10^4 tokens."""


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables for positions 0..max_seq_len-1; ``forward(T)`` slices them."""

    def __init__(self, head_dim: int, max_seq_len: int, base: float = ROPE_BASE) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)  # (T, D/2)
        # fp32 tables, left out of the state dict: they are a function of the shape only
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, seq_len: int) -> tuple[Tensor, Tensor]:
        return self.cos[:seq_len], self.sin[:seq_len]  # (T, D/2) each


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (..., T, D) queries or keys by the (T, D/2) tables; same shape and dtype out."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()  # fp32 rotation, no-op in fp32
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.to(x.dtype)
