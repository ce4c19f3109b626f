"""Export to safetensors: tied weights round-trip, run export picks the newest valid checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from ckpt_helpers import new_store
from safetensors import safe_open
from safetensors.torch import load_file

from trainwell.checkpoint import export_run, export_weights, load_weights
from trainwell.errors import CheckpointError


class TiedLM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(11, 4)
        self.proj = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight  # weight tying (Press & Wolf 2017)


def test_tied_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    sd = model.state_dict()
    out = tmp_path / "w.safetensors"
    export_weights(sd, out)

    plain = load_file(str(out))  # any safetensors reader works; the alias is stored once
    assert set(plain) == {"embed.weight", "proj.weight", "proj.bias"}
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["trainwell.tied"]) == {"head.weight": "embed.weight"}

    back = load_weights(out)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k])
    fresh = TiedLM()
    fresh.load_state_dict(back)
    assert fresh.head.weight is fresh.embed.weight
    x = torch.randint(0, 11, (2, 3))  # (B, T)
    assert torch.equal(fresh.head(fresh.proj(fresh.embed(x))), model.head(model.proj(model.embed(x))))


def test_overlapping_views_and_non_contiguous_are_copied_apart(tmp_path):
    base = torch.arange(12.0)
    sd = {"a": base[:6], "b": base[6:], "t": torch.arange(6.0).reshape(2, 3).t()}
    export_weights(sd, tmp_path / "v.safetensors")
    back = load_weights(tmp_path / "v.safetensors")
    for k in sd:
        assert torch.equal(back[k], sd[k])


def test_non_tensor_values_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="'x._extra_state': a dict, not a tensor"):
        export_weights({"w": torch.ones(1), "x._extra_state": {}}, tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def make_run(tmp_path, with_ema: bool):
    store = new_store(tmp_path / "run")  # RUN_DIR/checkpoints
    torch.manual_seed(1)
    model = TiedLM()
    for step in (10, 20):
        with torch.no_grad():
            model.proj.bias.add_(1.0)
        parts = {"model": model.state_dict(), "optimizer": {"state": {}}, "train": {"step": step}}
        if with_ema:
            parts["ema"] = {k: v * 0.5 for k, v in model.state_dict().items()}
        store.save(step, parts)
    return store, model


def test_export_run_model_and_ema(tmp_path):
    store, model = make_run(tmp_path, with_ema=True)
    out = export_run(tmp_path / "run", tmp_path)
    assert out == tmp_path / "model-step-00000020.safetensors"
    back = load_weights(out)
    assert torch.equal(back["proj.bias"], model.proj.bias.detach())
    ema = export_run(tmp_path / "run", tmp_path / "deep" / "ema.safetensors", ema=True)
    assert torch.equal(load_weights(ema)["proj.bias"], model.proj.bias.detach() * 0.5)
    with safe_open(str(ema), framework="pt") as f:
        meta = f.metadata()
    assert meta["trainwell.step"] == "20" and meta["trainwell.weights"] == "ema"
    assert not any(str(tmp_path) in v for v in meta.values())  # no paths leak into a shared file


def test_export_run_skips_a_damaged_newest(tmp_path):
    store, _ = make_run(tmp_path, with_ema=False)
    (store.path_for(20) / "model.pt").write_bytes(b"garbage")
    out = export_run(tmp_path / "run", tmp_path)
    assert out.name == "model-step-00000010.safetensors"


def test_export_run_errors(tmp_path):
    make_run(tmp_path, with_ema=False)
    with pytest.raises(CheckpointError, match="no part 'ema'.*ema.decay"):
        export_run(tmp_path / "run", tmp_path, ema=True)
    with pytest.raises(CheckpointError, match="no checkpoints folder"):
        export_run(tmp_path / "elsewhere", tmp_path)
    empty = tmp_path / "empty" / "checkpoints"
    empty.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no valid checkpoint to export"):
        export_run(tmp_path / "empty", tmp_path)
