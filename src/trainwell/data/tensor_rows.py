"""A map-style dataset over in-memory tensors that share their first dimension."""

from __future__ import annotations

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
            return self.tensors[0].index_select(0, idx)
        return tuple(t.index_select(0, idx) for t in self.tensors)

