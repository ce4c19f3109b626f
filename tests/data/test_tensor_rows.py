from __future__ import annotations

import torch
from torch.utils.data import default_collate

from trainwell.data.tensor_rows import TensorRows


def test_pairs_batch_equals_collate_of_items():
    x, y = torch.randn(10, 1, 3, 3), torch.arange(10)
    ds = TensorRows(x, y)
    idx = torch.tensor([3, 9, 0, 3])
    bx, by = ds.get_batch(idx)
    cx, cy = default_collate([ds[int(i)] for i in idx])
    assert len(ds) == 10 and torch.equal(bx, cx) and torch.equal(by, cy)
    assert bx.shape == (4, 1, 3, 3)


def test_single_tensor_items_and_batches_are_tensors():
    x = torch.randn(6, 4)
    ds = TensorRows(x)
    assert torch.equal(ds[2], x[2])
    idx = torch.tensor([1, 5])
    assert torch.equal(ds.get_batch(idx), default_collate([ds[1], ds[5]]))
