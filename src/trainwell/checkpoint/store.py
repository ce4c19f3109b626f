"""CheckpointStore: atomic, checksummed checkpoint directories under RUN_DIR/checkpoints.

Layout::

    checkpoints/
      step-00001000/            one checkpoint; exists only once complete
        model.pt optimizer.pt train.pt ...   one torch.save file per part
        MANIFEST.json           size + sha256 of every file, step, meta; written last
        HEALTH.json             optional sidecar: healthy or not, and the evidence
      .tmp-step-00001500-<pid>-<id>/   a save in progress (or one a crash interrupted)

A save writes into the hidden temporary directory, fsyncs every file and the directory,
then renames it into place and fsyncs the parent: the step directory appears whole or not
at all, so a kill -9 at any moment leaves the previous checkpoints loadable. Loading
verifies every sha256 before unpickling anything, and unpickles only tensors and plain data.

The store knows nothing about training: what goes into the parts, and when to save or
mark a checkpoint healthy, is the loop's business.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainwell.checkpoint.config import CheckpointConfig
from trainwell.checkpoint.fsio import fsync_dir, pid_alive, write_atomic
from trainwell.checkpoint.manifest import (
    MANIFEST,
    Fingerprint,
    is_plain_name,
    verify,
    write_manifest,
)
from trainwell.checkpoint.plain_data import check_plain_data
from trainwell.checkpoint.retention import Candidate, effective_health, plan_deletions
from trainwell.checkpoint.safe_load import safe_torch_load
from trainwell.errors import CheckpointError

log = logging.getLogger(__name__)

HEALTH = "HEALTH.json"
STEP_DIR = re.compile(r"^step-(\d{8,})$")
TMP_PREFIX = ".tmp-step-"
TRASH_PREFIX = ".trash-step-"
_LEFTOVER = re.compile(r"^\.(?:tmp|trash)-step-(\d+)-(\d+)-[0-9a-f]+$")

_in_flight: set[Path] = set()
"""Temporary directories being written by this process (any store instance or thread)."""
_in_flight_lock = threading.Lock()


@dataclass
class CheckpointInfo:
    path: Path
    step: int
    valid: bool
    """The manifest exists and the files match it (sizes, and hashes when ``verified``)."""
    problems: list[str]
    """One line per problem, each naming the file and what is wrong; empty when valid."""
    healthy: bool | None
    """The health mark (HEALTH.json); None when the checkpoint was never marked."""
    meta: dict[str, Any]
    """The ``meta`` given to ``save`` (empty when the manifest is unreadable)."""
    verified: bool = False
    """Every sha256 was recomputed and matched (``list()`` only checks sizes)."""
    parts: list[str] = field(default_factory=list)
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    """Each verified file's (size, mtime, inode): ``load`` of this info hashes only files
    that changed since."""


class CheckpointStore:
    """Atomic save, verified load, health marks and safe retention under ``root``."""

    def __init__(self, root: str | Path, cfg: CheckpointConfig | None = None) -> None:
        self.root = Path(root)
        self.cfg = cfg or CheckpointConfig()
        self.last_deleted: list[Path] = []
        """What retention removed after the latest save (the loop may log it)."""
        self._lock = threading.RLock()  # commit, retention and health marks; never held while writing

    def path_for(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    # ------------------------------------------------------------------ saving

    def save(
        self, step: int, parts: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> CheckpointInfo:
        """Write ``parts`` (name -> tensors and plain data) as checkpoint ``step``, then apply
        retention. Saving a step that exists replaces it. On a write failure the partial save
        is removed, earlier checkpoints stay intact, and CheckpointError says what failed.

        One process writes to a store (rank 0): a leftover temporary directory whose process
        id is no longer alive is taken for a crashed save and removed."""
        meta = dict(meta or {})
        _check_inputs(step, parts, meta)
        final = self.path_for(step)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(self._failure(step, e)) from e
        tmp = self.root / f"{TMP_PREFIX}{step:08d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with _in_flight_lock:
            _in_flight.add(tmp)
        try:
            self._sweep_leftovers()
            tmp.mkdir()
            files = {}
            for name, obj in parts.items():
                files[name] = f"{name}.pt"
                _write_part(tmp / files[name], obj)
            write_manifest(tmp, step, files, meta)  # last: a directory without it is not a checkpoint
            fsync_dir(tmp)
            with self._lock:
                self._commit(tmp, final)
        except (OSError, RuntimeError) as e:  # torch reports a failed write as RuntimeError
            _remove(tmp)
            raise CheckpointError(self._failure(step, e)) from e
        except BaseException:
            _remove(tmp)
            raise
        finally:
            with _in_flight_lock:
                _in_flight.discard(tmp)
        info = CheckpointInfo(final, step, True, [], None, meta, verified=True, parts=list(parts))
        try:
            self._retain(just_written=step)
        except (OSError, CheckpointError) as e:  # the save itself succeeded: do not report failure
            log.warning("checkpoint retention skipped after saving step %d: %s", step, e)
        return info

    def mark_healthy(self, step: int, healthy: bool, evidence: Mapping[str, Any]) -> None:
        """Record whether checkpoint ``step`` is a good rollback target, and why.

        The manifest is immutable, so the mark is a sidecar (HEALTH.json) written atomically;
        marking again replaces it."""
        path = self.path_for(step)
        record = {"step": step, "healthy": bool(healthy), "evidence": dict(evidence)}
        data = json.dumps(record, indent=1, default=repr).encode()
        with self._lock:
            if not (path / MANIFEST).is_file():
                raise CheckpointError(
                    f"cannot mark step {step} {'healthy' if healthy else 'unhealthy'}: "
                    f"no complete checkpoint at {path} (steps: {self._steps_text()})"
                )
            try:
                write_atomic(path / HEALTH, data)
            except OSError as e:
                raise CheckpointError(f"{path / HEALTH}: could not write the health mark ({e})") from e

    # ------------------------------------------------------------------ finding

    def list(self, deep: bool = False) -> list[CheckpointInfo]:
        """Every step-* directory, oldest first, with ``valid`` and ``problems``.

        Checks manifests and file sizes (cheap); ``deep=True`` also recomputes every hash."""
        return [self.inspect(p, deep=deep) for p in self._step_dirs()]

    def inspect(self, path: str | Path, deep: bool = True) -> CheckpointInfo:
        """Check one checkpoint directory against its manifest."""
        path = Path(path)
        m_step = STEP_DIR.match(path.name)
        seen: dict[str, Fingerprint] = {}
        manifest, problems = verify(path, deep=deep, expect_step=int(m_step[1]) if m_step else None, seen=seen)
        step = int(m_step[1]) if m_step else (manifest["step"] if manifest else -1)
        return CheckpointInfo(
            path=path,
            step=step,
            valid=not problems,
            problems=problems,
            healthy=_read_health(path),
            meta=dict(manifest.get("meta", {})) if manifest else {},
            verified=deep and not problems,
            parts=list(manifest["parts"]) if manifest else [],
            fingerprints=seen if deep and not problems else {},
        )

    def latest_valid(self) -> tuple[CheckpointInfo | None, list[str]]:
        """The newest checkpoint whose every hash verifies, and why each newer one was skipped
        (damaged checkpoints and interrupted saves alike)."""
        skipped: list[tuple[int, str]] = []
        found = None
        for path in reversed(self._step_dirs()):
            info = self.inspect(path, deep=True)
            if info.valid:
                found = info
                break
            skipped.append((info.step, f"{path}: skipped: {'; '.join(info.problems)}"))
        for step, path in self._leftovers():
            if (found is None or step > found.step) and path not in _in_flight:
                skipped.append((step, f"{path}: skipped: an interrupted save of step {step} (no manifest)"))
        return found, [msg for _, msg in sorted(skipped, key=lambda s: s[0], reverse=True)]

    def latest_healthy(self) -> CheckpointInfo | None:
        """The newest checkpoint that is healthy and verifies. Until any checkpoint carries a
        health mark, every valid one before the newest counts as healthy (training went on
        past it), the same rule retention uses."""
        infos = self.list()
        health = effective_health([Candidate(i.step, i.valid, i.healthy) for i in infos])
        for info in reversed(infos):
            if health[info.step]:
                full = self.inspect(info.path, deep=True)
                if full.valid:
                    return full
        return None

    # ------------------------------------------------------------------ loading

    def load(
        self, target: CheckpointInfo | str | Path | int, parts: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Load a checkpoint (an info, a directory, or a step number): verify the manifest
        first, then ``torch.load(weights_only=True)`` each part. ``parts`` picks a subset."""
        if isinstance(target, CheckpointInfo):
            return load_checkpoint_dir(target.path, parts, trusted=target.fingerprints)
        if isinstance(target, int) and not isinstance(target, bool):
            path = self.path_for(target)
        else:
            path = Path(target)
        return load_checkpoint_dir(path, parts)

    # ------------------------------------------------------------------ internals

    def _commit(self, tmp: Path, final: Path) -> None:
        trash = None
        if final.exists():  # re-saving a step (after a rollback): move the old one aside first
            trash = self._trash_name(final)
            os.rename(final, trash)
        try:
            os.rename(tmp, final)
        except OSError:
            if trash is not None:
                os.rename(trash, final)
            raise
        fsync_dir(self.root)
        if trash is not None:
            _remove(trash)

    def _retain(self, just_written: int) -> None:
        with self._lock:
            infos = self.list()
            cands = [Candidate(i.step, i.valid, i.healthy) for i in infos]
            doomed = plan_deletions(cands, self.cfg.keep_last, self.cfg.keep_healthy, just_written)
            self.last_deleted = []
            for step in doomed:
                path = self.path_for(step)
                trash = self._trash_name(path)
                try:
                    os.rename(path, trash)  # atomic: a crash mid-delete never leaves a half checkpoint
                except OSError as e:
                    log.warning("retention could not remove %s: %s", path, e)
                    continue
                _remove(trash)
                self.last_deleted.append(path)
            if self.last_deleted:
                try:
                    fsync_dir(self.root)
                except OSError as e:
                    log.warning("could not fsync %s after retention: %s", self.root, e)

    def _trash_name(self, path: Path) -> Path:
        step = int(STEP_DIR.match(path.name)[1])  # type: ignore[index]
        return self.root / f"{TRASH_PREFIX}{step:08d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def _step_dirs(self) -> list[Path]:
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CheckpointError(f"{self.root}: cannot list checkpoints ({e})") from e
        dirs = [p for p in entries if STEP_DIR.match(p.name) and p.is_dir()]
        return sorted(dirs, key=lambda p: int(STEP_DIR.match(p.name)[1]))  # type: ignore[index]

    def _leftovers(self) -> list[tuple[int, Path]]:
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return []
        out = []
        for p in entries:
            m = _LEFTOVER.match(p.name)
            if m and p.name.startswith(TMP_PREFIX):
                out.append((int(m[1]), p))
        return out

    def _sweep_leftovers(self) -> None:
        """Remove temporary and trash directories that no live save owns (a crash left them)."""
        for p in self.root.iterdir():
            m = _LEFTOVER.match(p.name)
            if not m:
                continue
            pid = int(m[2])
            with _in_flight_lock:
                busy = p in _in_flight
            if busy or (pid != os.getpid() and pid_alive(pid)):
                continue
            _remove(p)

    def _steps_text(self) -> str:
        steps = [STEP_DIR.match(p.name)[1] for p in self._step_dirs()]  # type: ignore[index]
        return ", ".join(str(int(s)) for s in steps) or "none"

    def _failure(self, step: int, e: BaseException) -> str:
        what = f"{e.strerror} ({e.filename})" if isinstance(e, OSError) and e.strerror else str(e)
        hint = ""
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            hint = f"; free disk space under {self.root}"
        elif isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = f"; make {self.root} writable"
        try:
            steps = self._steps_text()
        except CheckpointError:
            steps = "unknown"
        return (
            f"checkpoint step {step} was not saved to {self.root}: {what}; the partial save "
            f"was removed and earlier checkpoints are intact (steps: {steps}){hint}"
        )


def load_checkpoint_dir(path: str | Path, parts: Iterable[str] | None = None,
                        trusted: Mapping[str, Fingerprint] | None = None) -> dict[str, Any]:
    """Load the checkpoint directory at ``path``: every file it loads is checked against the
    manifest (size and sha256) before anything is unpickled, and only tensors and plain data
    are unpickled. Raises CheckpointError naming the file and the problem. ``trusted``: the
    fingerprints of a verification moments before (CheckpointInfo.fingerprints); those
    files are hashed again only if they changed since."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: not a checkpoint directory (expected a step-XXXXXXXX folder holding {MANIFEST})"
        )
    m_step = STEP_DIR.match(path.name)
    wanted = None if parts is None else list(parts)
    manifest, problems = verify(
        path, deep=True, expect_step=int(m_step[1]) if m_step else None, only_parts=wanted, trusted=trusted
    )
    if problems or manifest is None:
        raise CheckpointError(
            f"{path}: refusing to load a checkpoint that does not match its manifest:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    names = list(manifest["parts"]) if wanted is None else wanted
    return {name: safe_torch_load(path / manifest["parts"][name]) for name in names}


def _check_inputs(step: int, parts: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"checkpoint step must be an int >= 0, got {step!r}")
    if not parts:
        raise ValueError("a checkpoint needs at least one part")
    for name, obj in parts.items():
        if not isinstance(name, str) or not is_plain_name(name) or name.upper() == "MANIFEST":
            raise ValueError(f"checkpoint part name {name!r}: use letters, digits, '_', '-', '.'")
        check_plain_data(obj, f"part {name!r}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint meta must be JSON data (numbers, strings, lists, dicts): {e}") from None


def _write_part(path: Path, obj: Any) -> None:
    torch.save(obj, path)
    fd = os.open(path, os.O_RDONLY)  # torch.save closed its handle; fsync works on any fd
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_health(path: Path) -> bool | None:
    try:
        mark = json.loads((path / HEALTH).read_bytes())
    except (OSError, ValueError):
        return None  # unmarked (or an unreadable mark: treat as unknown, never as healthy)
    healthy = mark.get("healthy") if isinstance(mark, dict) else None
    return healthy if isinstance(healthy, bool) else None


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
