"""The Python API: fit(resume=True), trainwell.diagnose for fit() users, progress=False,
the two forms of loss_fn, and the user's model in summary.json and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell
from trainwell.api import loader_batch_size
from trainwell.errors import ConfigError, TaskError

X = torch.randn(96, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + X[:, 1] > 0).long()
CFG = {"train": {"steps": 12, "batch_size": 16, "threads": 1}, "log": {"tensorboard": False},
       "checkpoint": {"every_steps": 4, "keep_last": 10}}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def model() -> nn.Module:
    torch.manual_seed(1)
    return Net()


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fit_resume_continues_from_the_newest_checkpoint(tmp_path: Path) -> None:
    whole = trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, run_dir=tmp_path / "whole",
                          progress=False)
    # the run as if its process had died right after the checkpoint at step 8
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    for d in (tmp_path / "cut" / "checkpoints").glob("step-*"):
        if int(d.name.split("-")[1]) > 8:
            shutil.rmtree(d)
    again = trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, run_dir=tmp_path / "cut",
                          progress=False, resume=True)
    assert again.resumed_from == 8 and again.steps == 12
    assert [r["train/loss"] for r in rows(tmp_path / "cut") if "train/loss" in r] == \
        [r["train/loss"] for r in rows(tmp_path / "whole") if "train/loss" in r]
    assert torch.equal(again.model.body[0].weight, whole.model.body[0].weight)


def test_fit_resume_with_no_checkpoint_starts_from_the_beginning(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "train/loss": 9.0}\n')  # rows of a run killed before saving
    result = trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, run_dir=out, progress=False,
                           resume=True)
    assert result.resumed_from is None and result.steps == 12
    losses = [r["train/loss"] for r in rows(out) if "train/loss" in r]
    assert len(losses) == len({r["step"] for r in rows(out) if "train/loss" in r}) and 9.0 not in losses


def test_fit_resume_needs_a_run_dir() -> None:
    with pytest.raises(ConfigError, match="run_dir"):
        trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, resume=True)


def test_progress_false_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, eval_data=TensorDataset(X, Y),
                  run_dir=tmp_path, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, {**CFG, "log": {"progress": "off",
                  "tensorboard": False}}, run_dir=tmp_path / "b")
    assert "done in" in capsys.readouterr().out  # progress None follows log.progress: plain lines
    trainwell.train({"task": {"name": "digits"}, "train": {"steps": 3, "threads": 1}, "schedule": {"warmup_steps": 1},
                     "log": {"tensorboard": False}}, run_dir=tmp_path / "c", progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def loss_of_model(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def test_both_loss_forms_give_the_same_run(tmp_path: Path) -> None:
    a = trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, run_dir=tmp_path / "a", progress=False)
    b = trainwell.fit(model(), TensorDataset(X, Y), loss_of_model, CFG, run_dir=tmp_path / "b", progress=False)
    assert a.metrics["train/loss"] == b.metrics["train/loss"]

    def annotated(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(m(batch[0]), batch[1])

    c = trainwell.fit(model(), TensorDataset(X, Y), annotated, CFG, run_dir=tmp_path / "c", progress=False)
    assert c.metrics["train/loss"] == a.metrics["train/loss"]


def test_a_loss_of_the_wrong_form_names_both_forms(tmp_path: Path) -> None:
    def wrong(net, batch):  # noqa: ANN001, ANN202 (written for (model, batch), named otherwise)
        x, y = batch
        return F.cross_entropy(net(x), y)

    with pytest.raises(TaskError) as e:
        trainwell.fit(model(), TensorDataset(X, Y), wrong, CFG, run_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert "loss_fn(outputs, targets)" in msg and "loss_fn(model, batch)" in msg and "named 'model'" in msg


def test_summary_and_report_describe_the_users_model(tmp_path: Path) -> None:
    from trainwell.cli.main import main

    trainwell.fit(model(), TensorDataset(X, Y), F.cross_entropy, CFG, run_dir=tmp_path, progress=False)
    described = json.loads((tmp_path / "summary.json").read_text())["model"]
    assert described == {"class": "test_api.Net", "parameters": 146, "trainable_parameters": 146}
    assert main(["report", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "test_api.Net (146 parameters)" in html and "gpt (depth" not in html


def test_diagnose_takes_fit_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    d = trainwell.diagnose(m, TensorDataset(X, Y), F.cross_entropy, {"train": {"batch_size": 16}},
                           run_dir=tmp_path, steps=20)
    assert capsys.readouterr().out == ""
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # left as it was
    assert isinstance(d.findings, list) and "a 20-step run" in str(d) and d.findings == []
    assert json.loads((tmp_path / "summary.json").read_text())["model"]["class"] == "test_api.Net"

    def detached(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]).detach().requires_grad_(), batch[1])

    found = trainwell.diagnose(model(), TensorDataset(X, Y), detached, run_dir=tmp_path / "b", steps=20)
    assert found.findings[0].id == "loss_without_gradient"


def fit_config(config: dict) -> trainwell.RunConfig:
    """The RunConfig fit() makes of ``config``."""
    return trainwell.load_config(base={"task": {"name": "fit"}, **config}, check_task=False)


def test_a_dataloaders_batch_size_is_the_runs(tmp_path: Path) -> None:
    loader = DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True)
    steps = {"train": {"steps": 4, "threads": 1}, "log": {"tensorboard": False}}
    for call in (lambda c: trainwell.fit(model(), loader, F.cross_entropy, c, run_dir=tmp_path / "f", progress=False),
                 lambda c: trainwell.diagnose(model(), loader, F.cross_entropy, c, run_dir=tmp_path / "d", steps=10),
                 lambda c: trainwell.lr_find(model(), loader, F.cross_entropy, c, run_dir=tmp_path / "l", steps=10)):
        with pytest.raises(ConfigError, match=r"train.batch_size = 16, but train_data is a DataLoader with "
                                              r"batch_size=8.*DataLoader with batch_size=16"):
            call({**steps, "train": {**steps["train"], "batch_size": 16}})
    # unset: the DataLoader's, recorded in the run's config and said where it came from
    trainwell.fit(model(), loader, F.cross_entropy, steps, run_dir=tmp_path / "f", progress=False)
    assert trainwell.load_config(tmp_path / "f" / "config.toml", check_task=False).train.batch_size == 8
    cfg = loader_batch_size(fit_config(steps), loader)
    assert cfg.train.batch_size == 8 and "DataLoader given as train_data (8)" in cfg.fitted["train.batch_size"]
    # the same value set explicitly is kept without a note
    same = loader_batch_size(fit_config({"train": {"batch_size": 8}}), loader)
    assert same.train.batch_size == 8 and "train.batch_size" not in same.fitted


def test_a_batch_size_cannot_apply_to_a_dataloader_with_its_own_batch_sampler() -> None:
    from torch.utils.data import BatchSampler, SequentialSampler

    loader = DataLoader(TensorDataset(X, Y), batch_sampler=BatchSampler(SequentialSampler(range(96)), 12, False))
    with pytest.raises(ConfigError, match=r"train.batch_size = 16 cannot apply: .* its own batch_sampler"):
        loader_batch_size(fit_config({"train": {"batch_size": 16}}), loader)
    unset = fit_config({"train": {"steps": 4}})
    assert loader_batch_size(unset, loader) is unset
