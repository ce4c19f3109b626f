"""Samples for probes (data/draw.py) from each kind of data fit() takes: distinct samples
picked by the seed from a dataset or a DataLoader, a stream's next ones, and a clear error
for batches that cannot be joined or cut."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

from trainwell.data.draw import draw_samples
from trainwell.errors import DataError

CPU = torch.device("cpu")
N = 40
X = torch.randn(N, 3, generator=torch.Generator().manual_seed(0))
IDS = torch.arange(N)


def ids_of(data, n: int, seed: int = 3) -> tuple[list[int], int]:
    batch, count = draw_samples(data, default_collate, n, seed, CPU)
    return batch[1].tolist(), count


def test_a_dataset_gives_the_first_ids_of_the_seeded_permutation() -> None:
    ids, count = ids_of(TensorDataset(X, IDS), 10)
    assert count == 10 and ids == torch.randperm(N, generator=torch.Generator().manual_seed(3))[:10].tolist()
    everything, count = ids_of(TensorDataset(X, IDS), 100)  # no more than the dataset holds
    assert count == N and sorted(everything) == list(range(N))


def test_a_dataloader_gives_distinct_samples_across_its_batches() -> None:
    loader = DataLoader(TensorDataset(X, IDS), batch_size=8, shuffle=True)
    ids, count = ids_of(loader, 20)
    assert count == 20 and len(set(ids)) == 20
    assert ids_of(loader, 20)[0] == ids  # the seed decides
    as_dict = DataLoader(TensorDataset(X, IDS), batch_size=8, collate_fn=lambda s: {"x": default_collate(s)[0]})
    batch, count = draw_samples(as_dict, default_collate, 12, 0, CPU)  # read with the loader's own collate
    assert count == 12 and batch["x"].shape == (12, 3)


def test_a_stream_gives_its_next_samples_and_a_list_no_more_than_it_holds() -> None:
    def stream():
        for start in range(0, N, 8):
            yield X[start:start + 8], IDS[start:start + 8]

    assert ids_of(stream(), 20) == (list(range(20)), 20)
    listed = list(stream())[:2]
    assert ids_of(listed, 50) == (list(range(16)), 16)


def test_batches_that_cannot_be_joined_or_cut_say_what_is_needed() -> None:
    captioned = [(X[:8], IDS[:8], ["caption"] * 8), (X[8:16], IDS[8:16], ["caption"] * 8)]
    with pytest.raises(DataError, match=r"needs indexable data .* to join 2 batches \(tuple\)"):
        draw_samples(captioned, default_collate, 12, 0, CPU)
    with pytest.raises(DataError, match=r"needs indexable data .* to cut a batch \(tuple\) into parts of \[4, 4\]"):
        draw_samples(captioned, default_collate, 4, 0, CPU)
    batch, count = draw_samples(captioned, default_collate, 8, 0, CPU)  # one whole batch needs neither
    assert count == 8 and batch[2] == ["caption"] * 8
