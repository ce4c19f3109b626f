"""Counting the host reads of training steps: torch.Tensor's reading methods wrapped, the
loader's own host work on sample ids left out (tests/train/test_host_syncs.py and the
tensor-parallel worker tests/dist/tp_reads_worker.py)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


def count_reads(monkeypatch: pytest.MonkeyPatch, loader, host: frozenset[int] = frozenset()) -> Counter:  # noqa: ANN001
    """Reads of tensors by method name, from now until ``monkeypatch`` is undone; ``host``:
    ids of tensors that live on the host on every device (not counted)."""
    seen: Counter = Counter()
    counting = [True]
    for name in READS:
        real = getattr(torch.Tensor, name)

        def wrapped(self, *a, _real=real, _name=name, **k):  # noqa: ANN001, ANN002, ANN003
            if counting[0] and id(self) not in host:
                seen[_name] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    draw = loader.next

    def next_batch():  # noqa: ANN202
        counting[0] = False
        try:
            return draw()
        finally:
            counting[0] = True

    monkeypatch.setattr(loader, "next", next_batch)
    return seen
