"""Damaged and interrupted checkpoints are detected, named, and skipped for an intact one."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from ckpt_helpers import assert_same, make_parts, new_store

from trainwell.checkpoint import store as store_mod
from trainwell.checkpoint.manifest import MANIFEST
from trainwell.errors import CheckpointError


def three_checkpoints(tmp_path):
    store = new_store(tmp_path, keep_last=10)
    for step in (1, 2, 3):
        store.save(step, make_parts(step))
    return store


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_truncated_file(tmp_path):
    store = three_checkpoints(tmp_path)
    victim = store.path_for(3) / "optimizer.pt"
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size // 2)
    info = store.list()[-1]
    assert not info.valid
    assert info.problems == [f"optimizer.pt: {size // 2} bytes but the manifest says {size} (truncated)"]
    found, skipped = store.latest_valid()
    assert found.step == 2
    assert len(skipped) == 1 and "step-00000003" in skipped[0] and "optimizer.pt" in skipped[0]
    with pytest.raises(CheckpointError, match="optimizer.pt: .*truncated"):
        store.load(3)


def test_flipped_byte_needs_the_hash(tmp_path):
    store = three_checkpoints(tmp_path)
    flip_byte(store.path_for(3) / "model.pt")
    assert store.list()[-1].valid  # sizes match: the cheap check cannot see it...
    deep = store.list(deep=True)[-1]  # ...the hash can
    assert not deep.valid and "model.pt: sha256 does not match" in deep.problems[0]
    found, skipped = store.latest_valid()
    assert found.step == 2 and found.verified
    assert "model.pt: sha256 does not match" in skipped[0]
    assert_same(make_parts(2), store.load(found))
    with pytest.raises(CheckpointError, match="model.pt: sha256"):
        store.load(3)


def test_deleted_manifest(tmp_path):
    store = three_checkpoints(tmp_path)
    (store.path_for(3) / MANIFEST).unlink()
    info = store.list()[-1]
    assert not info.valid and info.problems[0].startswith("MANIFEST.json: missing")
    found, skipped = store.latest_valid()
    assert found.step == 2 and "MANIFEST.json: missing" in skipped[0]


def test_damaged_manifest_and_missing_file(tmp_path):
    store = three_checkpoints(tmp_path)
    m = store.path_for(3) / MANIFEST
    m.write_bytes(m.read_bytes()[:40])
    (store.path_for(2) / "train.pt").unlink()
    found, skipped = store.latest_valid()
    assert found.step == 1
    assert "MANIFEST.json: not valid JSON" in skipped[0]
    assert "train.pt: missing" in skipped[1]


def test_copied_directory_with_the_wrong_step(tmp_path):
    store = three_checkpoints(tmp_path)
    shutil.copytree(store.path_for(1), store.root / "step-00000009")
    found, skipped = store.latest_valid()
    assert found.step == 3
    assert "says step 1 but the directory is for step 9" in skipped[0]


def test_crash_mid_save_leaves_only_a_hidden_temporary_dir(tmp_path, monkeypatch):
    store = three_checkpoints(tmp_path)
    real_save = torch.save
    calls = []

    def dying_save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:  # first part written, second half-written, then the "crash"
            with open(f, "wb") as fh:
                fh.write(b"PK\x03\x04 half")
            raise KeyboardInterrupt  # not an I/O error: a kill
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    monkeypatch.setattr(store_mod, "_remove", lambda path: None)  # a killed process cleans nothing
    with pytest.raises(KeyboardInterrupt):
        store.save(4, make_parts(4))
    monkeypatch.undo()

    leftovers = [p for p in store.root.iterdir() if p.name.startswith(".tmp-step-00000004")]
    assert len(leftovers) == 1 and (leftovers[0] / "model.pt").exists()
    assert [i.step for i in store.list()] == [1, 2, 3]  # not a checkpoint
    found, skipped = store.latest_valid()
    assert found.step == 3
    assert skipped == [f"{leftovers[0]}: skipped: an interrupted save of step 4 (no manifest)"]
    # a later save (a new process would do the same) sweeps the leftover away
    store.save(5, make_parts(5))
    assert not leftovers[0].exists()


def test_unreadable_health_mark_counts_as_unknown(tmp_path):
    store = three_checkpoints(tmp_path)
    (store.path_for(2) / "HEALTH.json").write_text("{not json")
    assert store.list()[1].healthy is None and store.list()[1].valid


def test_newer_format_is_reported(tmp_path):
    store = three_checkpoints(tmp_path)
    m = store.path_for(3) / MANIFEST
    doc = json.loads(m.read_text())
    doc["format_version"] = 99
    m.write_text(json.dumps(doc))
    _, skipped = store.latest_valid()
    assert "format_version 99 is newer" in skipped[0]


def test_load_of_a_non_checkpoint(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        store.load(tmp_path / "nowhere")
