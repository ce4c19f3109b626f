"""Save and load give back exactly what was saved; bad input is refused at save time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ckpt_helpers import assert_same, make_parts, new_store

from trainwell.checkpoint import CheckpointStore, load_checkpoint_dir
from trainwell.checkpoint.manifest import MANIFEST
from trainwell.errors import CheckpointError


def test_round_trip_nested_parts(tmp_path):
    store: CheckpointStore = new_store(tmp_path)
    parts = make_parts(7)
    info = store.save(7, parts, {"loss": 2.5, "note": "end"})
    assert info.path.name == "step-00000007" and info.valid and info.verified
    loaded = store.load(info)
    assert_same(parts, loaded)
    assert_same(parts, store.load(7))
    assert_same(parts, load_checkpoint_dir(info.path))
    assert loaded["train"]["rng"].dtype == torch.uint8
    # the module state dict keeps its version metadata, which load_state_dict reads
    assert loaded["model"]._metadata == parts["model"]._metadata
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    model.load_state_dict(loaded["model"])


def test_manifest_records_every_file(tmp_path):
    store = new_store(tmp_path)
    info = store.save(3, make_parts(3), {"lr": 1e-3})
    manifest = json.loads((info.path / MANIFEST).read_text())
    assert manifest["step"] == 3 and manifest["meta"] == {"lr": 1e-3}
    assert set(manifest["files"]) == {"model.pt", "optimizer.pt", "train.pt"}
    for fname, rec in manifest["files"].items():
        assert rec["bytes"] == (info.path / fname).stat().st_size
        assert len(rec["sha256"]) == 64
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]  # no leftovers


def test_load_a_subset_of_parts(tmp_path):
    store = new_store(tmp_path)
    store.save(1, make_parts(1))
    got = store.load(1, parts=["train"])
    assert list(got) == ["train"] and got["train"]["step"] == 1
    with pytest.raises(CheckpointError, match="has no part 'ema'"):
        store.load(1, parts=["ema"])


def test_list_is_ordered_and_carries_meta(tmp_path):
    store = new_store(tmp_path, keep_last=10)
    for step in (20, 3, 100):
        store.save(step, {"train": {"step": step}}, {"step_again": step})
    infos = store.list()
    assert [i.step for i in infos] == [3, 20, 100]
    assert all(i.valid and i.meta == {"step_again": i.step} for i in infos)
    assert store.latest_valid()[0].step == 100


def test_resaving_a_step_replaces_it(tmp_path):
    store = new_store(tmp_path)
    store.save(5, {"train": {"v": 1}})
    store.mark_healthy(5, True, {})
    store.save(5, {"train": {"v": 2}})
    assert store.load(5)["train"]["v"] == 2
    assert store.list()[0].healthy is None  # the new contents were never judged
    assert [p.name for p in store.root.iterdir()] == ["step-00000005"]


@pytest.mark.parametrize(
    "bad, where",
    [
        (np.float64(1.0), "part 'train'\\['x'\\]"),
        (np.zeros(3), "torch.from_numpy"),
        (object(), "builtins.object"),
        ({frozenset([1]): 1}, "key"),
    ],
)
def test_unloadable_values_are_refused_before_writing(tmp_path, bad, where):
    store = new_store(tmp_path)
    with pytest.raises(CheckpointError, match=where):
        store.save(1, {"train": {"x": bad}})
    assert not store.root.exists() or not list(store.root.iterdir())


def test_bad_names_and_meta(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(ValueError, match="part name"):
        store.save(1, {"../evil": {}})
    with pytest.raises(ValueError, match="step"):
        store.save(-1, {"train": {}})
    with pytest.raises(CheckpointError, match="meta must be JSON"):
        store.save(1, {"train": {}}, {"t": torch.ones(1)})


def test_missing_store_lists_nothing(tmp_path):
    store = new_store(tmp_path)
    assert store.list() == []
    assert store.latest_valid() == (None, [])
    assert store.latest_healthy() is None
    assert not store.root.exists()  # looking never creates folders


def test_loading_the_newest_valid_checkpoint_hashes_its_files_once(tmp_path, monkeypatch):
    """latest_valid verifies every hash; load of that info hashes only files that changed
    since (size, mtime, inode), so a resume reads a large checkpoint once, not twice."""
    from trainwell.checkpoint import manifest as manifest_mod

    store = new_store(tmp_path)
    store.save(5, make_parts(5))
    hashed: list[str] = []
    real = manifest_mod.sha256_file
    monkeypatch.setattr(manifest_mod, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    info, _ = store.latest_valid()
    files = len(info.parts)
    assert info.verified and len(hashed) == files and len(info.fingerprints) == files
    store.load(info)
    assert len(hashed) == files  # trusted: nothing hashed again
    store.load(info.path)  # by path: no trust carried, hashed again
    assert len(hashed) == 2 * files
    victim = info.path / next(iter(info.fingerprints))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.unlink()  # a new file in its place (a new inode), as a copy or an edit would make
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        store.load(info)
    assert hashed[-1] == victim.name
