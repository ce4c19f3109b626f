"""AsyncSaver writes what a synchronous save writes, from a snapshot, and reports failures."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from ckpt_helpers import assert_same, make_parts, new_store

from trainwell.checkpoint import AsyncSaver, CheckpointStore
from trainwell.checkpoint.plain_data import snapshot
from trainwell.errors import CheckpointError


def test_async_equals_sync(tmp_path):
    sync = new_store(tmp_path / "sync")
    saver = AsyncSaver(new_store(tmp_path / "async"))
    parts = make_parts(3)
    sync.save(3, parts, {"loss": 1.5})
    saver.save(3, parts, {"loss": 1.5})
    info = saver.wait()
    assert info is not None and info.step == 3 and info.valid
    a, s = saver.store.load(3), sync.load(3)
    assert_same(s, a)
    assert_same(parts, a)
    for name in parts:  # the snapshot serialises to the very same bytes
        sync_bytes = (sync.path_for(3) / f"{name}.pt").read_bytes()
        assert (saver.store.path_for(3) / f"{name}.pt").read_bytes() == sync_bytes
    assert saver.store.list()[0].meta == {"loss": 1.5}
    assert saver.wait() is None  # nothing in flight


def test_snapshot_is_taken_before_save_returns(tmp_path, monkeypatch):
    """Training may change the tensors right after save() returns."""
    store = new_store(tmp_path)
    gate = threading.Event()
    real_save = CheckpointStore.save

    def slow_save(self, *a, **k):
        gate.wait(timeout=10)
        return real_save(self, *a, **k)

    monkeypatch.setattr(CheckpointStore, "save", slow_save)
    saver = AsyncSaver(store)
    w = torch.zeros(4)
    meta = {"lr": [1.0]}
    saver.save(1, {"model": {"w": w}}, meta)
    assert saver.in_flight
    w.add_(5.0)  # the optimizer steps on while the write is pending
    meta["lr"].append(2.0)
    gate.set()
    saver.wait()
    assert torch.equal(store.load(1)["model"]["w"], torch.zeros(4))
    assert store.list()[0].meta == {"lr": [1.0]}


def test_failure_in_the_thread_surfaces_on_wait(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    saver = AsyncSaver(store)
    saver.save(1, {"train": {"step": 1}})
    saver.wait()

    def boom(obj, f, *a, **k):
        raise OSError(28, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", boom)
    saver.save(2, {"train": {"step": 2}})  # returns at once; the failure comes later
    with pytest.raises(CheckpointError, match="step 2 was not saved.*No space left"):
        saver.wait()
    monkeypatch.undo()
    assert [i.step for i in store.list()] == [1]
    saver.save(3, {"train": {"step": 3}})  # the saver is usable again
    assert saver.wait().step == 3


def test_earlier_failure_is_raised_by_the_next_save_without_losing_it(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    saver = AsyncSaver(store)
    real = torch.save

    def fail_once(obj, f, *a, **k):
        monkeypatch.setattr(torch, "save", real)
        raise OSError(28, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", fail_once)
    saver.save(1, {"train": {"step": 1}})
    with pytest.raises(CheckpointError, match="step 1 was not saved"):
        saver.save(2, {"train": {"step": 2}})
    assert saver.wait().step == 2


def test_unloadable_data_is_refused_synchronously(tmp_path):
    saver = AsyncSaver(new_store(tmp_path))
    with pytest.raises(CheckpointError, match="not a tensor or plain data"):
        saver.save(1, {"train": {"f": lambda: 0}})
    assert not saver.in_flight


def test_one_save_in_flight(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    active = []
    overlap = []
    real_save = CheckpointStore.save

    def tracked(self, *a, **k):
        active.append(1)
        overlap.append(len(active))
        try:
            return real_save(self, *a, **k)
        finally:
            active.pop()

    monkeypatch.setattr(CheckpointStore, "save", tracked)
    saver = AsyncSaver(store)
    for step in range(4):
        saver.save(step, {"train": {"step": step}})
    saver.close()
    assert overlap == [1, 1, 1, 1]


def test_staging_buffers_are_reused_without_mixing_saves(tmp_path, monkeypatch):
    store = new_store(tmp_path, keep_last=5)
    real_save = CheckpointStore.save

    def slow_save(self, *a, **k):  # a slow disk: a reuse before the write ends would show
        time.sleep(0.05)
        return real_save(self, *a, **k)

    monkeypatch.setattr(CheckpointStore, "save", slow_save)
    saver = AsyncSaver(store)
    model = torch.nn.Linear(8, 8)
    momentum = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    before, buffer_ptrs = [], []
    for step in (1, 2, 3):
        with torch.no_grad():  # an in-place update, as optimizers do
            for name, p in model.named_parameters():
                momentum[name].mul_(0.9).add_(torch.randn_like(p))
                p.sub_(0.1 * momentum[name])
        before.append({k: v.clone() for k, v in model.state_dict().items()})
        saver.save(step, {"model": model.state_dict(), "optimizer": {"momentum": momentum}})
        buffer_ptrs.append({s.data_ptr() for s in saver._buffers.values()})
    saver.close()
    assert buffer_ptrs[0] == buffer_ptrs[1] == buffer_ptrs[2]  # steady state: no new host memory
    for step, expected in zip((1, 2, 3), before, strict=True):
        assert_same(expected, store.load(step)["model"])


def test_snapshot_keeps_tied_storage():
    emb = torch.nn.Embedding(5, 3)
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    sd = torch.nn.Sequential(emb, head).state_dict()
    snap = snapshot(sd)
    a, b = snap["0.weight"], snap["1.weight"]
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    assert a.untyped_storage().data_ptr() != sd["0.weight"].untyped_storage().data_ptr()
    assert torch.equal(a, sd["0.weight"])
    view = torch.arange(10.0)[2:8:2]
    assert torch.equal(snapshot({"v": view})["v"], view)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_snapshot_from_cuda_reuses_host_buffers(tmp_path):
    store = new_store(tmp_path, keep_last=5)
    saver = AsyncSaver(store)
    w = torch.randn(64, 32, device="cuda")
    for step in (1, 2):
        w.mul_(2.0)
        saver.save(step, {"model": {"w": w, "head": w[:8]}})
        saver.wait()
        loaded = store.load(step)["model"]
        assert loaded["w"].device.type == "cpu"
        assert torch.equal(loaded["w"], w.cpu()) and torch.equal(loaded["head"], w[:8].cpu())
