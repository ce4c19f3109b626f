"""Fixed-length windows over a token stream, for causal language models.

Window ``i`` holds tokens ``[i*stride, i*stride + seq_len + 1)``: the input is its first
``seq_len`` tokens and the target its last ``seq_len`` (the input shifted by one). With
stride = seq_len (the default) every token is a target exactly once per epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class TokenWindows(Dataset):
    """Map-style dataset of (input, target) windows over ``tokens`` (a 1-D uint8 or uint16
    array, possibly memory-mapped). Items and batches are int64 (what nn.Embedding and
    cross_entropy take); the stream itself stays in its compact dtype."""

    get_batch_rowwise = True
    """Row i of get_batch(idx) is window idx[i]: the loader may fetch a step's batch once and
    cut it into micro-batches (data/loader.py)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, stride: int | None = None) -> None:
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.stride = stride or seq_len
        self._offsets = np.arange(seq_len + 1)  # (T+1,)

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - self.seq_len - 1) // self.stride + 1)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """(x (T,), y (T,)) int64."""
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        start = i * self.stride
        chunk = torch.from_numpy(self.tokens[start : start + self.seq_len + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]

    def get_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(x (B, T), y (B, T)) int64 for window indices ``idx`` (B,), in one gather."""
        starts = idx.cpu().numpy().astype(np.int64) * self.stride  # (B,)
        if len(starts) and (starts.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        rows = starts[:, None] + self._offsets  # (B, T+1)
        chunk = torch.from_numpy(self.tokens[rows].astype(np.int64))  # (B, T+1)
        return chunk[:, :-1], chunk[:, 1:]
