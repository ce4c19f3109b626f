"""to_device: batches of any nesting torch's pytree knows (tuples, lists, dicts, named tuples)
reach the device; on a CPU run no tensor is copied."""

from __future__ import annotations

import torch

from trainwell.data.loader import BatchLoader, to_device
from trainwell.data.sampler import ResumableSampler
from trainwell.data.tensor_rows import TensorRows

CPU = torch.device("cpu")


def test_cpu_tensors_and_tuples_come_back_as_they_are():
    x, y = torch.randn(4, 3), torch.arange(4)
    assert to_device(x, CPU) is x
    pair = to_device((x, y), CPU)
    assert pair[0] is x and pair[1] is y
    nested = {"x": x, "parts": [x, (y, 3)], "name": "a"}
    moved = to_device(nested, CPU)
    assert moved["x"] is x and moved["parts"][0] is x and moved["parts"][1][0] is y
    assert moved["name"] == "a" and moved["parts"][1][1] == 3
    assert isinstance(moved["parts"], list) and isinstance(moved["parts"][1], tuple)


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
    (_, (x0, _)), (_, (x1, _)) = micro
    # views of the one fetched batch: no copy, the second starts where the first ends
    assert x0.untyped_storage().data_ptr() == x1.untyped_storage().data_ptr()
    assert x1.data_ptr() == x0.data_ptr() + x0.numel() * x0.element_size()
    for part, (xp, yp) in micro:
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
        (_, b0), (_, b1) = micro  # fetched per micro-batch: two batches
        assert b0["x"].untyped_storage().data_ptr() != b1["x"].untyped_storage().data_ptr()
        assert all(b["scale"].item() == 2.0 for _, b in micro)
