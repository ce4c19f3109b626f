from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainwell.drills import FaultsConfig, apply_to_batch
from trainwell.guards import QuarantineList, find_bad_samples
from trainwell.guards.quarantine import nonfinite_rows

V, T, D = 16, 12, 6


@pytest.fixture(scope="module")
def regressor() -> nn.Module:
    """A fitted linear regression, y = x @ w + noise: per-sample squared errors are
    chi-square (heavy-tailed). Set, not trained: the answer is known."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(D, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, D, generator=g))
        model.bias.zero_()
    return model


@pytest.fixture(scope="module")
def bigram() -> nn.Module:
    """A bigram language model that has learnt 'next token = token + 1 (mod V)': logit 3 on
    the right token plus noise, so that per-token losses vary (0.1 to ~1)."""
    g = torch.Generator().manual_seed(0)
    model = nn.Embedding(V, V)
    with torch.no_grad():
        table = 0.5 * torch.randn(V, V, generator=g)
        table[torch.arange(V), (torch.arange(V) + 1) % V] += 3.0
        model.weight.copy_(table)  # (V, V) logits of the next token
    return model


def lm_batch(g: torch.Generator, b: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, V, (b, T), generator=g)  # (B, T)
    return x, (x + 1) % V


def reg_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return (model(batch["x"]).squeeze(1) - batch["y"]) ** 2  # (B,)


def lm_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    x, y = batch
    with torch.no_grad():
        ce = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1), reduction="none")
    return ce.reshape(x.shape[0], -1).sum(1)  # (B,) sum over the sample's tokens


def reg_batch(model: nn.Module, seed: int, b: int = 32) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g)
    with torch.no_grad():
        y = model(x).squeeze(1) + 0.3 * torch.randn(b, generator=g)
    return {"x": x, "y": y}


def test_clean_batches_give_nothing(regressor, bigram):
    for seed in range(20):
        idx = torch.arange(32) + 100 * seed
        assert find_bad_samples(reg_loss(regressor, reg_batch(regressor, seed)), idx) == [], seed
        lm = lm_batch(torch.Generator().manual_seed(seed))
        assert find_bad_samples(lm_loss(bigram, lm), idx) == [], seed


def test_finds_exactly_the_samples_scaled_by_1e4(regressor):
    cfg = FaultsConfig(scale_batch_at=[7], poison_rows=[2, 9, 30])
    for seed in range(10):
        idx = torch.randperm(10_000, generator=torch.Generator().manual_seed(seed))[:32]
        batch = apply_to_batch(cfg, 7, reg_batch(regressor, seed), idx)
        found = find_bad_samples(reg_loss(regressor, batch), idx)
        assert found == sorted(idx[[2, 9, 30]].tolist()), seed


def test_finds_exactly_the_samples_with_corrupted_labels(bigram):
    for seed in range(10):
        idx = torch.arange(32) + 1000 * seed
        bad = sorted({int(idx[3]), int(idx[17])})
        cfg = FaultsConfig(corrupt_labels=bad)
        batch = apply_to_batch(cfg, 1, lm_batch(torch.Generator().manual_seed(seed)), idx)
        assert find_bad_samples(lm_loss(bigram, batch), idx) == bad, seed


def test_nonfinite_losses_and_inputs_are_bad(regressor):
    cfg = FaultsConfig(nan_batch_at=[3], poison_rows=[4])
    idx = torch.arange(32) + 500
    batch = apply_to_batch(cfg, 3, reg_batch(regressor, 0), idx)
    per_sample = reg_loss(regressor, batch)
    assert find_bad_samples(per_sample, idx) == [504]  # NaN input -> NaN loss
    clean_loss = reg_loss(regressor, reg_batch(regressor, 0))
    assert find_bad_samples(clean_loss, idx, nonfinite_rows(batch["x"])) == [504]
    assert nonfinite_rows(torch.arange(6).reshape(3, 2)).tolist() == [False] * 3


def test_a_huge_outlier_does_not_hide_itself_or_the_others():
    loss = torch.linspace(1.0, 1.3, 32)
    loss[[5, 6, 7]] = torch.tensor([1e9, 40.0, 1e4])  # a plain std would hide the 40
    assert find_bad_samples(loss, torch.arange(32)) == [5, 6, 7]


def test_identical_losses_and_tiny_batches_flag_nothing():
    assert find_bad_samples(torch.full((16,), 2.0), torch.arange(16)) == []
    assert find_bad_samples(torch.tensor([1.0, 50.0]), torch.arange(2)) == []


def test_quarantine_list_state_round_trip():
    q = QuarantineList()
    assert q.add([3, 7], "extreme loss", step=10) == [3, 7]
    assert q.add([7, 9], "nonfinite", step=12) == [9]
    assert q.ids() == {3, 7, 9} and 7 in q and len(q) == 3
    assert q.entry(7) == ("extreme loss", 10)
    state = q.state_dict()
    json.dumps(state)  # plain data
    r = QuarantineList()
    r.load_state_dict(state)
    assert r.ids() == q.ids() and r.entry(9) == ("nonfinite", 12)


def test_a_blow_up_of_the_whole_batch_quarantines_nothing(tmp_path):
    """SGD at lr 100 on the quadratic: every per-sample loss turns infinite together. That
    is the model, not the data: no sample is quarantined (blaming every batch emptied the
    dataset, a RuntimeError), and the autopilot stops the run with its reason."""
    import json

    import pytest

    from trainwell.api import train
    from trainwell.errors import TrainingHalted

    with pytest.raises(TrainingHalted):
        train({"task": {"name": "quadratic"}, "optim": {"name": "sgd", "lr": 100.0, "momentum": 0.0},
               "schedule": {"name": "constant", "warmup_steps": 0}, "clip": {"max_norm": 0.0},
               "train": {"steps": 200, "batch_size": 32, "eval_every": 50}, "log": {"tensorboard": False}},
              run_dir=tmp_path / "r", progress=False)
    events = [json.loads(x) for x in (tmp_path / "r" / "logbook.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "skip" for e in events)
    assert not any(e["kind"] == "quarantine" for e in events)
