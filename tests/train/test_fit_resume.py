"""fit() on a DataLoader, a TensorDataset and an HF dataset: exact resume (a run continued from
a mid-run checkpoint logs the same numbers and ends with the same weights as one that never
stopped), the same numbers on every path to the same batches, and accumulation of
DataLoader batches equal to the whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fit_helpers import cut_back, numbers
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from trainwell.api import FunctionTask, _as_config
from trainwell.data.batches import DataWarning
from trainwell.train.loop import run

STEPS, CUT = 24, 10
N = 88  # 5.5 batches of 16: the runs cross epoch boundaries mid-batch
X = torch.randn(N, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + X[:, 1] > 0).long()


class Rows(Dataset):
    """A map-style dataset without a fast path (items one by one, as from files)."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int):
        return X[i], Y[i]


class Strided(Sampler):
    """A custom order the same at every pass (not trainwell's to replace)."""

    def __iter__(self):
        return iter([*range(0, N, 2), *range(1, N, 2)])

    def __len__(self) -> int:
        return N


def config(**train):
    return _as_config({"train": {"steps": STEPS, "batch_size": 16, "threads": 1, **train},
                       "log": {"every": 1, "tensorboard": False},
                       "checkpoint": {"every_steps": 5, "keep_last": 10}, "ema": {"decay": 0.9}})


def fit_run(make_data, out: Path, *, resume: bool = False, **train):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    task = FunctionTask(model, make_data(), nn.functional.cross_entropy, eval_data=TensorDataset(X, Y))
    return run(config(**train), task=task, run_dir=out, progress=False, resume=resume)


def assert_exact_resume(make_data, tmp_path: Path) -> list[dict]:
    whole = fit_run(make_data, tmp_path / "whole")
    cut_back(tmp_path / "whole", tmp_path / "resumed", CUT)
    again = fit_run(make_data, tmp_path / "resumed", resume=True)
    assert again.resumed_from == CUT
    assert numbers(tmp_path / "resumed") == numbers(tmp_path / "whole")
    for a, b in zip(whole.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    return numbers(tmp_path / "whole")


def hf_data():
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_dict({"x": X.numpy(), "y": Y.numpy()}).with_format("torch")


CASES = {
    "DataLoader shuffle": lambda: DataLoader(Rows(), batch_size=16, shuffle=True),
    "DataLoader 2 workers": lambda: DataLoader(Rows(), batch_size=16, shuffle=True, num_workers=2),
    "DataLoader(TensorDataset)": lambda: DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True),
    "TensorDataset": lambda: TensorDataset(X, Y),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fit_resumes_exactly(name, tmp_path):
    assert_exact_resume(CASES[name], tmp_path)


def test_fit_on_an_hf_dataset_resumes_exactly_and_matches_the_tensordataset(tmp_path):
    ds = hf_data()

    def go(out, resume=False):
        torch.manual_seed(1)
        m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        task = FunctionTask(m, ds, lambda m, b: nn.functional.cross_entropy(m(b["x"]), b["y"]), eval_data=ds)
        return run(config(), task=task, run_dir=out, progress=False, resume=resume)

    go(tmp_path / "whole")
    cut_back(tmp_path / "whole", tmp_path / "resumed", CUT)
    assert go(tmp_path / "resumed", resume=True).resumed_from == CUT
    assert numbers(tmp_path / "resumed") == numbers(tmp_path / "whole")
    # the same rows as the TensorDataset's, drawn in the same order: the same run
    fit_run(lambda: TensorDataset(X, Y), tmp_path / "td")
    assert numbers(tmp_path / "whole") == numbers(tmp_path / "td")


def test_stateful_dataloader_resumes_through_its_state_dict(tmp_path):
    tdl = pytest.importorskip("torchdata.stateful_dataloader")
    assert_exact_resume(lambda: tdl.StatefulDataLoader(Rows(), batch_size=16, sampler=Strided()), tmp_path)


def test_a_dataloader_trainwell_cannot_seed_warns_and_resumes_by_rereading(tmp_path):
    with pytest.warns(DataWarning, match="re-read it from the start"):
        assert_exact_resume(lambda: DataLoader(Rows(), batch_size=16, sampler=Strided()), tmp_path)


def test_every_path_to_the_same_batches_gives_the_same_run(tmp_path):
    """A DataLoader drawn by trainwell (per-sample items, then collate), its in-memory fast
    path, and the TensorDataset itself at the same batch size: the same ids, the same numbers."""
    runs = {name: numbers(fit_run(CASES[name], tmp_path / name.replace(" ", "_")).run_dir)
            for name in ["DataLoader shuffle", "DataLoader(TensorDataset)", "TensorDataset"]}
    first, *rest = runs.values()
    assert len(first) > STEPS and all(r == first for r in rest)


def test_accumulating_dataloader_batches_equals_the_whole_batch(tmp_path):
    one = numbers(fit_run(CASES["DataLoader shuffle"], tmp_path / "a1").run_dir)
    two = numbers(fit_run(CASES["DataLoader shuffle"], tmp_path / "a2", accumulate=3).run_dir)
    losses = [r["train/loss"] for r in one if "train/loss" in r]
    assert len(losses) == STEPS
    assert losses == pytest.approx([r["train/loss"] for r in two if "train/loss" in r], rel=1e-5, abs=1e-6)
