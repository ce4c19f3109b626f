"""A small on-disk cache of prepared arrays (e.g. the concatenated byte corpus).

Entries are ``<cache dir>/<name>-<key>.npz`` where ``key`` hashes everything the arrays
depend on, so a stale entry is never read: it is simply not found. Writes are atomic (a
temporary file in the same folder, then ``os.replace``), so an interrupted run or two runs
at once never leave a half-written entry. The cache is an optimisation only: when the folder
cannot be written (read-only home, sandbox) or an entry cannot be read, the arrays are
rebuilt and everything still works.

The cache stays bounded: a write keeps the ``KEEP`` most recently used entries of its name
(a read marks an entry used) and deletes older ones, which no longer match the data they
were built from or have not been asked for since (an edited text folder would otherwise
leave a full copy of the corpus behind at every change).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "TRAINWELL_CACHE_DIR"
"""Environment variable that overrides the cache folder; set it to an empty string to turn the cache off."""


KEEP = 4
"""Entries kept per name: the newest by last use (a few data sets, or Python versions, in turn)."""


def cache_dir() -> Path | None:
    """``$TRAINWELL_CACHE_DIR``, else ``$XDG_CACHE_HOME/trainwell``, else ``~/.cache/trainwell``;
    None when the cache is turned off (``TRAINWELL_CACHE_DIR=""``)."""
    if CACHE_ENV in os.environ:
        value = os.environ[CACHE_ENV]
        return Path(value) if value else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainwell"


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts`` (lists, strings, numbers)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def cached_arrays(
    name: str, key: str, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays stored under (name, key), or ``build()``'s arrays, which are then stored."""
    folder = cache_dir()
    if folder is None:
        return build()
    path = folder / f"{name}-{key}.npz"
    arrays = _read(path)
    if arrays is not None:
        _touch(path)
        return arrays
    arrays = build()
    if _write(path, arrays):
        _prune(folder, name, path)
    return arrays


def _touch(path: Path) -> None:
    """Mark an entry as used now (its modification time orders the pruning)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _prune(folder: Path, name: str, written: Path, keep: int = KEEP) -> None:
    """Delete the entries of ``name`` beyond the ``keep`` most recently used (``written``,
    the entry just stored, first whatever the clock's resolution says)."""
    try:
        entries = [p for p in folder.glob("*.npz") if p.stem.rpartition("-")[0] == name]
        entries.sort(key=lambda p: (p == written, p.stat().st_mtime_ns), reverse=True)
    except OSError:
        return
    for old in entries[keep:]:
        try:
            old.unlink()
        except OSError:
            pass  # in use elsewhere, or not ours to delete: it stays


def _read(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None  # unreadable or corrupt: rebuild (and overwrite) it


def _write(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Store the entry atomically; False when the folder cannot be written."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loading is a plain read
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError:
        return False  # not writable: the cache is only an optimisation
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
