"""A map-style dataset over in-memory tensors that share their first dimension."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class TensorRows(Dataset):
    """Rows of one or more tensors. One tensor: an item is a tensor and a batch is a tensor;
    several (or ``as_tuple``, as a TensorDataset of one tensor): an item is a tuple (x, y, ...)
    and a batch the tuple of stacked rows, the same as ``default_collate`` of the items would
    give (as a tuple rather than a list)."""

    def __init__(self, *tensors: Tensor, as_tuple: bool = False) -> None:
        if not tensors:
            raise ValueError("TensorRows needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"tensors disagree on length: {[len(t) for t in tensors]}")
        self.tensors = tensors
        self._single = len(tensors) == 1 and not as_tuple
        self._norms: tuple[np.ndarray, int] | None = None

    get_batch_rowwise = True
    """Row i of get_batch(idx) is row idx[i]: the loader may fetch a step's batch once and
    cut it into micro-batches (data/loader.py)."""

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i: int) -> Tensor | tuple[Tensor, ...]:
        if self._single:
            return self.tensors[0][i]
        return tuple(t[i] for t in self.tensors)

    def get_batch(self, idx: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Rows ``idx`` (B,) of every tensor, by one index_select each (no per-sample loop)."""
        idx = idx.to(self.tensors[0].device)
        if self._single:
            return self.tensors[0][idx]
        return tuple(t[idx] for t in self.tensors)

    def input_norms(self) -> tuple[np.ndarray, int] | None:
        """(per-row L2 norm (N,) float32 on the host, row size D) of the first tensor, the
        model input the step measures for the input guard; None when it is not floating
        point (token ids are not measured) or when a subclass's get_batch may change the rows.

        Computed once, at the first call: the rows never change, so the loader looks a
        batch's norms up by id on the host (data/loader.py) and the step runs no norm op
        for them. The same op as the step's own measurement (train/step.py sample_norms), row
        by row, so the same values."""
        if self._norms is None:
            x = self.tensors[0]
            if type(self).get_batch is not TensorRows.get_batch or not x.is_floating_point() or x.ndim < 1:
                return None
            flat = x.detach().reshape(len(x), -1)  # (N, D)
            dtype = None if flat.dtype is torch.float32 else torch.float32
            norms = torch.linalg.vector_norm(flat, dim=1, dtype=dtype)  # (N,)
            self._norms = (norms.cpu().numpy(), flat.shape[1])
        return self._norms
