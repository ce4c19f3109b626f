"""fit() takes data where the user has it: which loader each kind gets, the in-memory fast
path (same batches as the per-sample path, one index op per column), batch ids, and clear
errors for data it cannot use."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    Sampler,
    StackDataset,
    TensorDataset,
    default_collate,
)

import trainwell
from trainwell.data.batches import BatchStream, DataWarning
from trainwell.data.inmemory import DictRows, batched_view
from trainwell.data.loader import BatchLoader
from trainwell.data.source import build_loader, eval_batches
from trainwell.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::trainwell.data.batches.DataWarning")
CPU = torch.device("cpu")
N = 40
X = torch.randn(N, 3, generator=torch.Generator().manual_seed(0))
IDS = torch.arange(N)


class Rows(Dataset):
    """A plain map-style dataset (no fast path): item i is (x_i, i)."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int):
        return X[i], IDS[i]


class Backwards(Sampler):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -1))

    def __len__(self) -> int:
        return self.n


def loader_for(data, accumulate=1, batch_size=8):
    return build_loader(data, default_collate, CPU, batch_size=batch_size, accumulate=accumulate, seed=3)


def same(a, b) -> bool:
    a, b = (list(a) if isinstance(a, (tuple, list)) else a), (list(b) if isinstance(b, (tuple, list)) else b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return torch.equal(a, b)


@pytest.mark.parametrize("make", [
    lambda: TensorDataset(X, IDS),
    lambda: (X.numpy().astype(np.float32), IDS.numpy()),
    lambda: {"x": X, "y": IDS},
    lambda: StackDataset(TensorDataset(X), TensorDataset(IDS)),
    lambda: StackDataset(x=TensorDataset(X), y=TensorDataset(IDS)),
], ids=["TensorDataset", "numpy tuple", "dict of tensors", "StackDataset", "StackDataset dict"])
def test_in_memory_data_is_indexed_in_batches_like_the_per_sample_path(make):
    data = make()
    view = batched_view(data)
    assert view is not None and callable(view.get_batch)
    idx = torch.tensor([5, 0, 17, 39])
    per_sample = default_collate([view[int(i)] for i in idx])  # what DataLoader would build
    assert same(view.get_batch(idx), per_sample)
    loader = loader_for(data)
    assert isinstance(loader, BatchLoader) and loader.dataset is not data or isinstance(data, dict)


def test_a_tensordataset_subclass_keeps_its_own_getitem():
    class Augmented(TensorDataset):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x * 2, y

    assert batched_view(Augmented(X, IDS)) is None  # its __getitem__ is the user's: per sample


def test_numpy_float64_becomes_float32_and_bad_arrays_are_refused():
    view = batched_view((X.double().numpy(), IDS.numpy()))
    x, y = view.get_batch(torch.tensor([0, 1]))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    with pytest.raises(DataError, match="first dimension"):
        batched_view((X.numpy(), IDS.numpy()[:5]))
    with pytest.raises(DataError, match="dtype object"):
        batched_view(np.array([{"a": 1}], dtype=object))


def test_hf_dataset_in_torch_format_is_read_into_tensors_once():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"x": X.numpy(), "y": IDS.numpy()}).with_format("torch")
    view = batched_view(ds)
    assert isinstance(view, DictRows)
    idx = torch.tensor([3, 1, 30])
    batch = view.get_batch(idx)
    assert torch.equal(batch["y"], idx) and torch.allclose(batch["x"], X[idx])
    assert same(batch, ds[idx.tolist()])  # what the dataset itself returns for those rows
    assert batched_view(datasets.Dataset.from_dict({"y": IDS.numpy()})) is None  # python format: generic path


def test_a_dataloader_with_standard_samplers_is_drawn_by_trainwell_with_true_ids():
    dl = DataLoader(Rows(), batch_size=8, shuffle=True)
    loader = loader_for(dl, accumulate=2)
    assert isinstance(loader, BatchStream) and loader.seeded is not None
    seen = []
    for _ in range(5):  # one epoch of 40 samples
        micro = loader.next()
        assert len(micro) == 2
        for ids, (x, y) in micro:
            assert torch.equal(ids, y)  # the ids are the dataset's indices: quarantine can use them
            assert torch.equal(x, X[ids])
            seen += ids.tolist()
    assert sorted(seen) == list(range(N))  # shuffled, each sample once per epoch
    assert seen != list(range(N))


def test_a_quarantined_id_is_never_served_again_from_a_dataloader():
    loader = loader_for(DataLoader(Rows(), batch_size=8, shuffle=True))
    loader.exclude(frozenset({0, 1, 2}))
    for _ in range(15):
        ids, (_, y) = loader.next()[0]
        assert not set(y.tolist()) & {0, 1, 2}


def test_dataloader_over_tensordataset_takes_the_fast_path_with_the_same_ids():
    fast = loader_for(DataLoader(TensorDataset(X, IDS), batch_size=8, shuffle=True))
    slow = loader_for(DataLoader(Rows(), batch_size=8, shuffle=True))
    assert isinstance(fast, BatchLoader)
    for _ in range(7):
        (ids_a, (xa, ya)), (ids_b, (xb, yb)) = fast.next()[0], slow.next()[0]
        assert torch.equal(ids_a, ids_b) and torch.equal(ya, yb) and torch.equal(xa, xb)


def test_a_dataloader_with_its_own_sampler_is_used_as_it_comes_and_says_what_resume_does():
    with pytest.warns(DataWarning, match="re-read it from the start.*cannot quarantine"):
        loader = loader_for(DataLoader(Rows(), batch_size=8, sampler=Backwards(N)))
    ids, (x, y) = loader.next()[0]
    assert y.tolist() == list(range(39, 31, -1))  # the user's order
    assert ids.tolist() == list(range(8))  # positions in the stream, not sample ids


def test_a_list_of_batches_resumes_exactly_but_cannot_quarantine():
    with pytest.warns(DataWarning, match=r"list of batches: resume .*\(exact\).*cannot quarantine"):
        loader_for([(X[:8], IDS[:8]), (X[8:16], IDS[8:16])])


def test_stateful_dataloader_gives_no_warning():
    tdl = pytest.importorskip("torchdata.stateful_dataloader")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        loader = loader_for(tdl.StatefulDataLoader(Rows(), batch_size=8, sampler=Backwards(N)))
    assert isinstance(loader, BatchStream) and loader.stateful


def test_accumulation_cuts_each_batch_and_refuses_what_it_cannot_cut():
    loader = loader_for([(X[:10], IDS[:10])] * 3, accumulate=3)
    micro = loader.next()
    assert [len(ids) for ids, _ in micro] == [4, 3, 3]
    assert torch.equal(torch.cat([b[1] for _, b in micro]), IDS[:10])
    with pytest.raises(DataError, match="train.accumulate = 2 .*not a tensor"):
        loader_for([{"x": X[:4], "text": ["a", "b", "c", "d"]}], accumulate=2).next()
    with pytest.raises(DataError, match="cannot be split into 3 parts"):
        loader_for([(X[:2], IDS[:2])], accumulate=3).next()


def test_a_generator_runs_out_with_a_clear_error():
    loader = loader_for((X[i:i + 8], IDS[i:i + 8]) for i in range(0, 16, 8))
    loader.next(), loader.next()
    with pytest.raises(DataError, match="ran out after 2 batches.*one-pass generator"):
        loader.next()


def test_evaluation_batches_from_each_kind():
    dl = DataLoader(Rows(), batch_size=16)
    assert [len(b[1]) for b in eval_batches(dl, default_collate, batch_size=7, max_batches=0)] == [16, 16, 8]
    assert [len(b[1]) for b in eval_batches(TensorDataset(X, IDS), default_collate, batch_size=16,
                                            max_batches=2)] == [16, 16]
    used = (b for b in [(X, IDS)])
    list(eval_batches(used, default_collate, batch_size=8, max_batches=0))
    with pytest.raises(DataError, match="yielded no batches: a generator is used up"):
        list(eval_batches(used, default_collate, batch_size=8, max_batches=0))


def test_fit_refuses_data_it_cannot_use_with_a_trainwell_error(tmp_path):
    with pytest.raises(DataError, match="train_data is a int; expected a Dataset, a DataLoader"):
        trainwell.fit(nn.Linear(3, 2), 7, nn.functional.cross_entropy, {"train": {"steps": 5}},
                      run_dir=tmp_path / "r", progress=False)


def test_batch_len_counts_tensors_then_plain_lists_and_refuses_neither():
    from trainwell.data.batches import batch_len
    from trainwell.errors import DataError

    assert batch_len((torch.zeros(5, 3), torch.zeros(5))) == 5
    assert batch_len({"text": ["a", "b", "c"], "y": torch.zeros(3)}) == 3  # the tensor decides
    assert batch_len({"text": ["a", "b"], "ids": [[1, 2], [3, 4]]}) == 2  # no tensor: the first plain list
    assert batch_len([torch.tensor(1.0), torch.zeros(4, 2)]) == 4  # a 0-dim leaf has no batch dimension
    with pytest.raises(DataError, match="no tensor with a batch"):
        batch_len({"cfg": object()})


def test_fit_on_batches_of_text_without_tensors(tmp_path):
    """Batches holding no tensor at all (a model that encodes its own text, loss_fn(model,
    batch)) train, and each counts as many samples as it holds texts."""

    class Chars(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, texts):
            return torch.tensor([float(len(t)) for t in texts]) * self.w

    def loss_fn(model, batch):
        return nn.functional.mse_loss(model(batch["text"]), torch.tensor(batch["target"]))

    batches = [{"text": ["ab", "c", "def"], "target": [1.0, 0.5, 1.5]}] * 4
    cfg = {"train": {"steps": 80}, "optim": {"lr": 0.05}, "schedule": {"name": "constant"}}
    res = trainwell.fit(Chars(), batches, loss_fn, cfg, run_dir=tmp_path / "r", progress=False)
    assert res.steps == 80
    assert abs(float(res.model.w.detach()) - 0.5) < 0.05  # least squares: sum(len * y) / sum(len^2) = 7 / 14
