"""AsyncSaver: training waits only for a CPU copy of the state; a thread writes it.

Blocking time drops from "serialise + write + fsync + hash" to "copy to CPU memory"
(benchmarks/checkpoint_async.py measures both). The price: one copy of the state kept in host
memory (staging buffers, reused from save to save), and a failure that surfaces later, at
``wait()`` or at the next ``save()``, instead of at the step that saved.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

import torch

from trainwell.checkpoint.plain_data import StorageKey, check_plain_data, snapshot
from trainwell.checkpoint.store import CheckpointInfo, CheckpointStore


class AsyncSaver:
    """Background writer for one CheckpointStore, with at most one save in flight."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self._thread: threading.Thread | None = None
        self._result: CheckpointInfo | None = None
        self._error: BaseException | None = None
        self._buffers: dict[StorageKey, torch.UntypedStorage] = {}
        """The last snapshot's CPU storages, reused by the next one (it is written by then)."""

    @property
    def in_flight(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def save(self, step: int, parts: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
        """Snapshot ``parts`` to CPU now and write them in the background; returns once the
        snapshot is taken, so training may modify the originals right away.

        A save still in flight is waited for first (one at a time, one snapshot in memory).
        If that earlier save failed, its error is raised here after this save has started,
        so no failure goes unreported and this save is not lost."""
        for name, obj in parts.items():  # refuse unloadable data now, not in the thread
            check_plain_data(obj, f"part {name!r}")
        previous_error = self._join()
        snap = snapshot(dict(parts), self._buffers)  # the previous write is done: reuse its buffers
        meta_copy = copy.deepcopy(dict(meta or {}))
        self._result = None
        # Not a daemon: an interpreter exiting mid-write waits for the checkpoint to land.
        self._thread = threading.Thread(
            target=self._run, args=(step, snap, meta_copy), name=f"trainwell-save-{step}"
        )
        self._thread.start()
        if previous_error is not None:
            raise previous_error

    def wait(self) -> CheckpointInfo | None:
        """Block until the save in flight is written; return its info, or re-raise its failure
        (a CheckpointError for I/O failures). None when nothing was saved since the last wait."""
        error = self._join()
        if error is not None:
            raise error
        result, self._result = self._result, None
        return result

    def close(self) -> None:
        """Wait for the last save (re-raising its failure)."""
        self.wait()

    def _run(self, step: int, parts: dict[str, Any], meta: dict[str, Any]) -> None:
        try:
            self._result = self.store.save(step, parts, meta)
        except BaseException as e:  # handed to the caller's thread by wait()
            self._error = e

    def _join(self) -> BaseException | None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        return error
