from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from trainwell.data.windows import TokenWindows


@pytest.mark.parametrize(
    ("n", "t", "expected"), [(9, 4, 2), (10, 4, 2), (8, 4, 1), (5, 4, 1), (4, 4, 0), (0, 4, 0)]
)
def test_number_of_windows(n, t, expected):
    assert len(TokenWindows(np.arange(n, dtype=np.uint8), t)) == expected


def test_items_are_shifted_windows_at_stride_seq_len():
    w = TokenWindows(np.arange(20, dtype=np.uint8), 4)
    x, y = w[2]
    assert x.dtype == torch.int64 and x.shape == (4,)
    assert x.tolist() == [8, 9, 10, 11] and y.tolist() == [9, 10, 11, 12]
    with pytest.raises(IndexError):
        w[len(w)]


def test_get_batch_equals_collate_of_items_also_on_a_memmap(tmp_path):
    tokens = (np.arange(1000) * 7919 % 60000).astype(np.uint16)
    path = tmp_path / "t.bin"
    tokens.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    w = TokenWindows(mm, 16)
    idx = torch.tensor([5, 0, 61, 5, 33])
    bx, by = w.get_batch(idx)
    cx, cy = default_collate([w[int(i)] for i in idx])
    assert bx.shape == (5, 16) and bx.dtype == torch.int64
    assert torch.equal(bx, cx) and torch.equal(by, cy)
    assert int(bx.max()) > 255  # uint16 values survive
    with pytest.raises(IndexError):
        w.get_batch(torch.tensor([len(w)]))
