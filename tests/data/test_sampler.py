from __future__ import annotations

import torch

from trainwell.data.loader import BatchLoader, split_sizes
from trainwell.data.sampler import ResumableSampler


def test_epochs_are_permutations_and_deterministic():
    a, b = ResumableSampler(10, seed=3), ResumableSampler(10, seed=3)
    first = a.draw(10)
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, b.draw(10))
    second = a.draw(10)
    assert sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)  # a new order each epoch


def test_draw_crosses_epoch_boundary():
    s = ResumableSampler(7, seed=0)
    ids = s.draw(10)
    assert ids.numel() == 10 and s.epoch == 1 and s.position == 3


def test_resume_from_state_continues_exactly():
    full = ResumableSampler(13, seed=5)
    expected = torch.cat([full.draw(4) for _ in range(8)])
    part = ResumableSampler(13, seed=5)
    got = [part.draw(4) for _ in range(3)]
    state = part.state_dict()
    resumed = ResumableSampler(13, seed=5)
    resumed.load_state_dict(state)
    got += [resumed.draw(4) for _ in range(5)]
    assert torch.equal(torch.cat(got), expected)


def test_excluded_ids_are_never_served():
    s = ResumableSampler(20, seed=1)
    s.exclude = frozenset({3, 4, 17})
    ids = torch.cat([s.draw(6) for _ in range(20)])
    assert not ({3, 4, 17} & set(ids.tolist()))
    assert ids.numel() == 120


def test_split_sizes():
    assert split_sizes(10, 3) == [4, 3, 3]
    assert split_sizes(8, 4) == [2, 2, 2, 2]


def test_loader_splits_the_same_ids_whatever_the_accumulation():
    data = torch.arange(50).float().unsqueeze(1)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            return data[i]

    ids = {}
    for k in (1, 3):
        loader = BatchLoader(DS(), ResumableSampler(50, seed=0), torch.stack, torch.device("cpu"), 10, k)
        micro = loader.next()
        assert [m[0].numel() for m in micro] == split_sizes(10, k)
        ids[k] = torch.cat([m[0] for m in micro])
        assert torch.equal(torch.cat([m[1] for m in micro]).squeeze(1).long(), ids[k])
    assert torch.equal(ids[1], ids[3])

