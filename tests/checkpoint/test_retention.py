"""Retention rules, one test each, on the pure planner and through the store."""

from __future__ import annotations

import pytest
from ckpt_helpers import new_store

from trainwell.checkpoint.retention import Candidate, effective_health, plan_deletions
from trainwell.errors import CheckpointError


def cands(*specs):
    """specs: (step, valid, healthy)"""
    return [Candidate(s, v, h) for s, v, h in specs]


def test_keep_last_when_nothing_is_marked():
    c = cands(*[(s, True, None) for s in range(1, 8)])
    assert plan_deletions(c, keep_last=3, keep_healthy=2, just_written=7) == [1, 2, 3, 4]
    # every completed checkpoint before the newest counts as healthy until marks exist
    assert effective_health(c) == {s: s < 7 for s in range(1, 8)}


def test_unmarked_newest_healthy_survives_a_tiny_keep_last():
    c = cands(*[(s, True, None) for s in range(1, 6)])
    assert plan_deletions(c, keep_last=1, keep_healthy=0, just_written=5) == [1, 2, 3]


def test_healthy_ones_are_kept_beyond_keep_last():
    # a spike after step 3: everything since is marked unhealthy
    c = cands((1, True, True), (2, True, True), (3, True, True), (4, True, False),
              (5, True, False), (6, True, False), (7, True, None))
    assert plan_deletions(c, keep_last=3, keep_healthy=2, just_written=7) == [1, 4]


def test_newest_healthy_is_never_deleted_even_with_keep_healthy_zero():
    c = cands((1, True, True), (2, True, False), (3, True, False), (4, True, False))
    assert plan_deletions(c, keep_last=2, keep_healthy=0, just_written=4) == [2]


def test_nothing_is_deleted_when_the_newest_is_invalid():
    c = cands((1, True, None), (2, True, None), (3, True, None), (4, True, None), (5, False, None))
    assert plan_deletions(c, keep_last=1, keep_healthy=0) == []


def test_just_written_is_kept_even_if_older_than_the_rest():
    # re-saving step 2 after a rollback, while 3..6 still exist
    c = cands(*[(s, True, None) for s in range(2, 7)])
    assert 2 not in plan_deletions(c, keep_last=2, keep_healthy=0, just_written=2)


def test_invalid_checkpoints_are_kept_and_not_counted():
    c = cands((1, True, None), (2, False, None), (3, True, None), (4, True, None))
    # keep_last=2 keeps 4 and 3 (valid ones); 3 is also the newest (implicitly) healthy
    assert plan_deletions(c, keep_last=2, keep_healthy=1, just_written=4) == [1]


def test_unmarked_counts_as_not_healthy_once_marks_exist():
    c = cands((1, True, True), (2, True, None), (3, True, None), (4, True, None))
    assert effective_health(c) == {1: True, 2: False, 3: False, 4: False}
    assert plan_deletions(c, keep_last=2, keep_healthy=1, just_written=4) == [2]


# ---------------------------------------------------------------- through the store


def test_store_applies_keep_last(tmp_path):
    store = new_store(tmp_path, keep_last=2, keep_healthy=1)
    for step in range(1, 6):
        store.save(step, {"train": {"step": step}})
    assert [i.step for i in store.list()] == [4, 5]
    assert store.last_deleted == [store.path_for(3)]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


def test_store_keeps_the_healthy_one_through_a_long_bad_stretch(tmp_path):
    store = new_store(tmp_path, keep_last=2, keep_healthy=1)
    store.save(1, {"train": {"step": 1}})
    store.mark_healthy(1, True, {"loss": 2.0, "why": "no spike in 128 steps"})
    for step in range(2, 8):
        store.save(step, {"train": {"step": step}})
        store.mark_healthy(step, False, {"loss": float("nan")})
    assert [i.step for i in store.list()] == [1, 6, 7]
    healthy = store.latest_healthy()
    assert healthy.step == 1 and healthy.verified and healthy.healthy is True


def test_store_deletes_nothing_while_the_newest_is_damaged(tmp_path):
    store = new_store(tmp_path, keep_last=1, keep_healthy=0)
    store.save(1, {"train": {"step": 1}})
    store.save(2, {"train": {"step": 2}})
    # the newest on disk is damaged (a copy from elsewhere, a bad disk...)
    bad = store.path_for(9)
    bad.mkdir()
    (bad / "train.pt").write_bytes(b"x")
    store.save(3, {"train": {"step": 3}})
    assert [i.step for i in store.list()] == [1, 2, 3, 9]


def test_mark_healthy_sidecar(tmp_path):
    store = new_store(tmp_path)
    info = store.save(4, {"train": {"step": 4}})
    store.mark_healthy(4, True, {"grad_norm": 0.5, "odd": object()})
    assert store.list()[0].healthy is True
    store.mark_healthy(4, False, {"reason": "loss spike at step 9"})
    assert store.list()[0].healthy is False and store.list()[0].valid
    assert sorted(p.name for p in info.path.iterdir()) == [
        "HEALTH.json", "MANIFEST.json", "train.pt"]  # no temporary file left
    with pytest.raises(CheckpointError, match=r"no complete checkpoint .*\(steps: 4\)"):
        store.mark_healthy(5, True, {})


def test_latest_healthy_falls_back_past_a_damaged_one(tmp_path):
    store = new_store(tmp_path, keep_last=5)
    for step in (1, 2, 3):
        store.save(step, {"train": {"step": step}})
        store.mark_healthy(step, True, {})
    f = store.path_for(3) / "train.pt"
    data = bytearray(f.read_bytes())
    data[-30] ^= 0xFF
    f.write_bytes(bytes(data))
    assert store.latest_healthy().step == 2


def test_latest_healthy_without_marks_is_the_one_before_the_newest(tmp_path):
    store = new_store(tmp_path)
    assert store.latest_healthy() is None
    store.save(1, {"train": {}})
    assert store.latest_healthy() is None  # the only one has not been trained past yet
    store.save(2, {"train": {}})
    assert store.latest_healthy().step == 1
