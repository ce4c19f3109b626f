"""to_device: batches of any nesting reach the device; on a CPU run nothing is copied."""

from __future__ import annotations

import torch

from trainwell.data.loader import BatchLoader, to_device
from trainwell.data.sampler import ResumableSampler
from trainwell.data.tensor_rows import TensorRows

CPU = torch.device("cpu")


def test_cpu_tensors_and_tuples_come_back_as_they_are():
    x, y = torch.randn(4, 3), torch.arange(4)
    assert to_device(x, CPU) is x
    pair = (x, y)
    assert to_device(pair, CPU) is pair
    nested = {"x": x, "parts": [x, (y, 3)], "name": "a"}
    moved = to_device(nested, CPU)
    assert moved["x"] is x and moved["parts"][0] is x and moved["parts"][1][0] is y
    assert moved["name"] == "a" and moved["parts"][1][1] == 3
    assert isinstance(moved["parts"], list) and isinstance(moved["parts"][1], tuple)


def test_list_subclass_kept():
    class Batch(list):
        pass

    b = Batch([torch.zeros(2)])
    assert type(to_device(b, CPU)) is Batch


def test_loader_micro_batches_are_the_rows():
    data = TensorRows(torch.arange(20.0).reshape(10, 2), torch.arange(10))
    loader = BatchLoader(data, ResumableSampler(10, seed=0, shuffle=False), list, CPU, 6, 2)
    micro = loader.next()
    assert [ids.tolist() for ids, _ in micro] == [[0, 1, 2], [3, 4, 5]]
    for ids, (x, y) in micro:
        assert torch.equal(y, ids) and torch.equal(x, data.tensors[0][ids])


def test_rowwise_dataset_is_fetched_once_and_cut_into_views():
    data = TensorRows(torch.arange(20.0).reshape(10, 2), torch.arange(10))
    loader = BatchLoader(data, ResumableSampler(10, seed=0, shuffle=False), list, CPU, 6, 2)
    micro = loader.next()
    ids, (x, y) = micro.whole
    assert ids.tolist() == list(range(6))
    for part, (xp, yp) in micro:  # views of the one batch: no copy
        assert xp.data_ptr() == x[part[0]].data_ptr() and yp.data_ptr() == y[part[0]].data_ptr()
        assert torch.equal(xp, data.tensors[0][part]) and torch.equal(yp, part)


class Unsplittable(TensorRows):
    """Declares itself row-wise but returns a leaf without the batch dimension."""

    def get_batch(self, idx):
        x, y = super().get_batch(idx)
        return {"x": x, "y": y, "scale": torch.tensor(2.0)}


def test_a_batch_that_cannot_be_cut_is_fetched_per_micro_batch():
    data = Unsplittable(torch.arange(20.0).reshape(10, 2), torch.arange(10))
    loader = BatchLoader(data, ResumableSampler(10, seed=0, shuffle=False), list, CPU, 6, 2)
    for _ in range(2):
        micro = loader.next()
        assert micro.whole is None and len(micro) == 2
        assert all(b["scale"].item() == 2.0 for _, b in micro)
