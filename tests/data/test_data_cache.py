from __future__ import annotations

import numpy as np
import pytest

from trainwell.data.cache import cache_dir, cache_key, cached_arrays


def _builder(calls: list[int]):
    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"a": np.arange(5, dtype=np.uint8), "b": np.array([1.5])}

    return build


def test_second_call_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", str(tmp_path / "c"))
    calls: list[int] = []
    first = cached_arrays("t", "k1", _builder(calls))
    second = cached_arrays("t", "k1", _builder(calls))
    assert len(calls) == 1
    assert np.array_equal(first["a"], second["a"]) and second["a"].dtype == np.uint8
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["t-k1.npz"]  # no temp files left


def test_a_different_key_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", str(tmp_path))
    calls: list[int] = []
    cached_arrays("t", cache_key("x", 1), _builder(calls))
    cached_arrays("t", cache_key("x", 2), _builder(calls))
    assert len(calls) == 2
    assert cache_key("x", [1, 2]) == cache_key("x", [1, 2]) != cache_key("x", [2, 1])


def test_unwritable_cache_still_returns_the_arrays(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", str(blocker / "sub"))  # mkdir fails
    calls: list[int] = []
    out = cached_arrays("t", "k", _builder(calls))
    assert np.array_equal(out["a"], np.arange(5))


def test_corrupt_entry_is_rebuilt_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", str(tmp_path))
    (tmp_path / "t-k.npz").write_bytes(b"garbage")
    calls: list[int] = []
    out = cached_arrays("t", "k", _builder(calls))
    assert len(calls) == 1 and np.array_equal(out["a"], np.arange(5))
    cached_arrays("t", "k", _builder(calls))
    assert len(calls) == 1  # the rebuilt entry is readable


@pytest.mark.parametrize("value", [""])
def test_empty_env_turns_the_cache_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", value)
    assert cache_dir() is None
    calls: list[int] = []
    cached_arrays("t", "k", _builder(calls))
    cached_arrays("t", "k", _builder(calls))
    assert len(calls) == 2


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("TRAINWELL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "trainwell"


def test_a_write_keeps_the_most_recently_used_entries_of_its_name(tmp_path, monkeypatch):
    """Entries of one name beyond KEEP are deleted at the next write, least recently used
    first (a read counts as a use); other names and other files are left alone."""
    import os

    from trainwell.data import cache

    monkeypatch.setenv("TRAINWELL_CACHE_DIR", str(tmp_path))
    for i in range(5):  # older entries of "t", used at t = 1000, 2000, ...
        path = tmp_path / f"t-old{i}.npz"
        np.savez(path, a=np.arange(3))
        os.utime(path, (1000.0 * (i + 1), 1000.0 * (i + 1)))
    for other in ("tx-k.npz", "t-x-k.npz", "t-old9.txt"):  # another name, a longer name, not an entry
        (tmp_path / other).write_bytes(b"x")
        os.utime(tmp_path / other, (1.0, 1.0))
    calls: list[int] = []
    cached_arrays("t", "old0", _builder(calls))  # a read: now the most recently used
    assert calls == []
    cached_arrays("t", "new", _builder(calls))  # a write: prunes "t" to KEEP entries
    left = sorted(p.name for p in tmp_path.glob("t-*"))
    assert len(calls) == 1 and cache.KEEP == 4
    assert left == ["t-new.npz", "t-old0.npz", "t-old3.npz", "t-old4.npz", "t-old9.txt", "t-x-k.npz"]
    assert (tmp_path / "tx-k.npz").exists()
