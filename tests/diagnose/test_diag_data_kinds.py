"""diagnose and lr-find take the data fit() takes: a Dataset, a DataLoader (its own collate
included), a generator of batches; batches that cannot be joined or cut give lines saying
what could not be checked, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import trainwell

X = torch.randn(256, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + X[:, 1] > 0).long()
PROBES = ("input scale", "depth profile", "outputs and targets", "overfitting one batch", "labels against inputs",
          "a 20-step run")


def model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))


def batches(x: torch.Tensor = X, size: int = 16) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless generator of random batches (what a user's own data pipeline yields)."""
    g = torch.Generator().manual_seed(5)
    while True:
        i = torch.randint(0, len(x), (size,), generator=g)
        yield x[i], Y[i]


class Pairs(Dataset):
    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return X[i], Y[i]


def as_dict(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([s[0] for s in samples]), "y": torch.stack([s[1] for s in samples])}


def dict_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch["x"]), batch["y"])


DATA = {
    "TensorDataset": lambda: TensorDataset(X, Y),
    "DataLoader": lambda: DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True),
    "generator": batches,
}


@pytest.mark.parametrize("kind", list(DATA))
def test_diagnose_runs_every_probe_on_each_kind_of_data(kind: str, tmp_path) -> None:
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    d = trainwell.diagnose(m, DATA[kind](), F.cross_entropy, run_dir=tmp_path, steps=20)
    assert d.not_checked == [], d.not_checked
    assert all(any(p in c for c in d.checked) for p in PROBES), d.checked
    assert d.findings == []  # sound data and model
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_diagnose_finds_problems_in_a_dataloader_and_a_generator(tmp_path) -> None:
    loader = DataLoader(TensorDataset(X * 255, Y), batch_size=16, shuffle=True)
    d = trainwell.diagnose(model(), loader, F.cross_entropy, run_dir=tmp_path / "a", steps=20)
    assert "inputs_not_scaled" in [f.id for f in d.findings]

    def detached(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]).detach().requires_grad_(), batch[1])

    d = trainwell.diagnose(model(), batches(), detached, run_dir=tmp_path / "b", steps=20)
    assert d.findings[0].id == "loss_without_gradient"


def test_the_short_run_knows_the_batch_size_of_batches_that_come_ready_made(tmp_path) -> None:
    d = trainwell.diagnose(model(), batches(size=24), F.cross_entropy, run_dir=tmp_path, steps=20)
    assert d.stats["run"]["batch_size"] == 24  # not train.batch_size's default 32


def test_a_dataloader_is_read_with_its_own_collate(tmp_path) -> None:
    loader = DataLoader(Pairs(), batch_size=16, shuffle=True, collate_fn=as_dict)
    d = trainwell.diagnose(model(), loader, dict_loss, run_dir=tmp_path, steps=20)
    assert d.not_checked == [] and d.findings == []


def test_batches_that_cannot_be_joined_say_what_was_not_checked(tmp_path) -> None:
    def tagged() -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for x, y in batches():
            yield x, y, ["a caption"] * len(y)  # a leaf without the batch dimension as a tensor

    def loss(model: nn.Module, batch: tuple) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    d = trainwell.diagnose(model(), tagged(), loss, run_dir=tmp_path, steps=20)
    assert any(line.startswith("could not check the input scale: DataError") and "tensors with the batch "
               "dimension" in line for line in d.not_checked), d.not_checked
    assert any("a 20-step run" in c for c in d.checked)  # the probes that need no joining still ran


@pytest.mark.parametrize("kind", list(DATA))
def test_lr_find_suggests_a_learning_rate_on_each_kind_of_data(kind: str, tmp_path) -> None:
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = trainwell.lr_find(m, DATA[kind](), F.cross_entropy, run_dir=tmp_path, steps=60)
    assert r.found and 1e-5 < r.suggested_lr < 1.0, r.message
    assert (tmp_path / "lr_find.json").exists() and (tmp_path / "lr_find.svg").exists()
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


STREAM_TASK = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import trainwell

X = torch.randn(256, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + X[:, 1] > 0).long()


def stream():
    g = torch.Generator().manual_seed(5)
    while True:
        i = torch.randint(0, len(X), (16,), generator=g)
        yield X[i], Y[i]


class Sign(trainwell.Task):
    name = "sign"

    def __init__(self, kind):
        self.kind = kind

    def build_model(self):
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))

    def train_data(self):
        return stream() if self.kind == "generator" else DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True)

    def loss(self, model, batch):
        x, y = batch
        per = nn.functional.cross_entropy(model(x), y, reduction="none")
        return trainwell.LossOutput(sum=per.sum(), count=float(len(y)), per_sample=per)


def make_task(kind="generator"):
    return Sign(kind)
'''


@pytest.fixture
def stream_task(tmp_path, monkeypatch) -> str:
    import sys

    (tmp_path / "stream_task.py").write_text(STREAM_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("stream_task", None)
    return "task.name=stream_task:make_task"


def test_the_commands_take_a_user_task_that_yields_batches(stream_task: str, tmp_path, capsys) -> None:
    from trainwell.cli.main import main

    assert main(["diagnose", "--set", stream_task, "--run-dir", str(tmp_path / "d"), "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "could not check" not in out
    report = json.loads((tmp_path / "d" / "diagnosis.json").read_text())
    assert all(any(p in c for c in report["checked"]) for p in PROBES), report["checked"]
    assert main(["lr-find", "--set", stream_task, "--run-dir", str(tmp_path / "l"), "--steps", "60"]) == 0
    assert "suggested lr" in capsys.readouterr().out


def test_the_commands_refuse_a_batch_size_that_a_dataloader_would_ignore(stream_task: str, tmp_path, capsys) -> None:
    from trainwell.cli.main import main

    loader = ["--set", stream_task, "--set", 'task.options={kind = "loader"}', "--set", "train.batch_size=64"]
    assert main(["diagnose", *loader, "--run-dir", str(tmp_path / "d"), "--steps", "20"]) == 2
    assert "train.batch_size = 64, but train_data is a DataLoader with batch_size=16" in capsys.readouterr().err
    assert main(["lr-find", *loader, "--run-dir", str(tmp_path / "l")]) == 2
    assert "train.batch_size = 64, but train_data is a DataLoader with batch_size=16" in capsys.readouterr().err


def test_train_on_a_user_tasks_dataloader_takes_its_batch_size(stream_task: str, tmp_path, capsys) -> None:
    """trainwell train, as diagnose and lr-find: a DataLoader's batch size is the run's, an
    explicit other one is refused by name before anything runs."""
    import tomllib

    from trainwell.cli.main import main

    loader = ["--set", stream_task, "--set", 'task.options={kind = "loader"}', "--set", "train.steps=12",
              "--progress", "off"]
    assert main(["train", *loader, "--set", "train.batch_size=64", "--run-dir", str(tmp_path / "bad")]) == 2
    assert "train.batch_size = 64, but train_data is a DataLoader with batch_size=16" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
    assert main(["train", *loader, "--run-dir", str(tmp_path / "good")]) == 0
    config = tomllib.loads((tmp_path / "good" / "config.toml").read_text())
    assert config["train"]["batch_size"] == 16
