"""A failed save (disk full, a write error) keeps earlier checkpoints and says so."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from ckpt_helpers import assert_same, make_parts, new_store

from trainwell.checkpoint import fsio
from trainwell.errors import CheckpointError


def saved_twice(tmp_path):
    store = new_store(tmp_path, keep_last=2)
    store.save(1, make_parts(1))
    store.save(2, make_parts(2))
    return store


def assert_intact(store):
    assert [i.step for i in store.list(deep=True) if i.valid] == [1, 2]
    assert [p.name for p in sorted(store.root.iterdir())] == ["step-00000001", "step-00000002"]
    assert_same(make_parts(2), store.load(2))


def test_disk_full_while_writing_a_part(tmp_path, monkeypatch):
    store = saved_twice(tmp_path)
    real_save = torch.save
    calls = []

    def full_disk(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError) as err:
        store.save(3, make_parts(3))
    monkeypatch.undo()
    msg = str(err.value)
    assert "checkpoint step 3 was not saved" in msg
    assert "No space left on device" in msg and "optimizer.pt" in msg
    assert "earlier checkpoints are intact (steps: 1, 2)" in msg
    assert "free disk space" in msg
    assert_intact(store)  # and retention did not run: nothing deleted


def test_torch_reports_a_failed_write_as_runtime_error(tmp_path, monkeypatch):
    store = saved_twice(tmp_path)

    def failing(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(CheckpointError, match="file write failed.*earlier checkpoints are intact"):
        store.save(3, make_parts(3))
    monkeypatch.undo()
    assert_intact(store)


def test_disk_full_while_writing_the_manifest(tmp_path, monkeypatch):
    store = saved_twice(tmp_path)
    real = fsio.write_bytes_durable

    def full(path, data):
        if path.name.startswith(".MANIFEST"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(fsio, "write_bytes_durable", full)
    with pytest.raises(CheckpointError, match="MANIFEST"):
        store.save(3, make_parts(3))
    monkeypatch.undo()
    assert_intact(store)


def test_rename_failure_keeps_the_old_copy_of_a_resaved_step(tmp_path, monkeypatch):
    store = saved_twice(tmp_path)
    real_rename = os.rename

    def rename(src, dst):
        if ".tmp-step-" in str(src):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(CheckpointError, match="Input/output error"):
        store.save(2, make_parts(99))
    monkeypatch.undo()
    assert_intact(store)


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = new_store(blocker)
    with pytest.raises(CheckpointError, match="checkpoint step 1 was not saved"):
        store.save(1, make_parts(1))
