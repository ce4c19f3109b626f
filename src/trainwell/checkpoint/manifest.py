"""MANIFEST.json: what a complete checkpoint holds, and the check that it still holds it.

A checkpoint directory counts only if its manifest exists, parses, and every file it
lists has the recorded size and sha256. The manifest is written last, so an interrupted
save never has one; HF's resume trusted "the highest directory" and loaded half-written
ones (transformers #27820 and the races after it).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trainwell.checkpoint.fsio import sha256_file, write_atomic

MANIFEST = "MANIFEST.json"
FORMAT = "trainwell-checkpoint"
FORMAT_VERSION = 1
"""Bumped when the layout changes in a way an older reader would misread."""

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def is_plain_name(name: str) -> bool:
    """A file or part name with no path in it (a crafted manifest must not point outside)."""
    return bool(_PLAIN_NAME.match(name)) and ".." not in name


def write_manifest(
    directory: Path, step: int, parts: Mapping[str, str], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Hash every part file in ``directory`` and write the manifest atomically.

    ``parts`` maps a part name to its file name. Hashing reads the files back, so the
    manifest describes what the file system holds, not what we meant to write.
    """
    files = {}
    for fname in parts.values():
        p = directory / fname
        files[fname] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "created_unix": time.time(),
        "parts": dict(parts),
        "files": files,
        "meta": dict(meta),
    }
    write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def read_manifest(directory: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The parsed manifest and the problems with its own shape (not with the files)."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [f"{MANIFEST}: missing (the save did not finish, or the file was removed)"]
    except OSError as e:
        return None, [f"{MANIFEST}: unreadable ({e.strerror or e})"]
    try:
        m = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, [f"{MANIFEST}: not valid JSON, {len(raw)} bytes (truncated or damaged: {e})"]
    problems = _shape_problems(m)
    return (m if not problems else None), problems


def verify(
    directory: Path,
    *,
    deep: bool,
    expect_step: int | None = None,
    only_parts: Iterable[str] | None = None,
    trusted: Mapping[str, Fingerprint] | None = None,
    seen: dict[str, Fingerprint] | None = None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Check a checkpoint directory against its manifest.

    ``deep=False`` checks presence and sizes (cheap: catches truncation and missing files);
    ``deep=True`` also recomputes every sha256 (catches flipped bytes). ``only_parts``
    restricts the file checks to those parts. Returns the manifest (None when unreadable)
    and one line per problem, each naming the file and what is wrong.

    ``seen`` collects the :func:`fingerprint` of each file whose hash matched; a file whose
    fingerprint equals its entry in ``trusted`` (from a check moments before, in this
    process) is not hashed again: loading right after finding the newest valid checkpoint
    reads the bytes once, not twice.
    """
    m, problems = read_manifest(directory)
    if m is None:
        return None, problems
    if expect_step is not None and m["step"] != expect_step:
        problems.append(
            f"{MANIFEST}: says step {m['step']} but the directory is for step {expect_step} "
            "(renamed or copied over?)"
        )
    wanted = set(m["parts"]) if only_parts is None else set(only_parts)
    for part in sorted(wanted - set(m["parts"])):
        problems.append(f"{MANIFEST}: has no part {part!r} (parts: {', '.join(m['parts'])})")
    for part in sorted(wanted & set(m["parts"])):
        fname = m["parts"][part]
        problems.extend(_file_problems(directory / fname, m["files"][fname], deep, trusted, seen))
    return m, problems


Fingerprint = tuple[int, int, int]
"""(size, mtime in ns, inode) of a file: a rewrite or a replacement changes it."""


def fingerprint(st: os.stat_result) -> Fingerprint:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _file_problems(path: Path, rec: Mapping[str, Any], deep: bool,
                   trusted: Mapping[str, Fingerprint] | None = None,
                   seen: dict[str, Fingerprint] | None = None) -> list[str]:
    try:
        st = path.stat()
        size = st.st_size
    except FileNotFoundError:
        return [f"{path.name}: missing (listed in {MANIFEST})"]
    except OSError as e:
        return [f"{path.name}: unreadable ({e.strerror or e})"]
    if size != rec["bytes"]:
        what = "truncated" if size < rec["bytes"] else "grew"
        return [f"{path.name}: {size} bytes but the manifest says {rec['bytes']} ({what})"]
    if not deep:
        return []
    fp = fingerprint(st)
    if trusted is not None and trusted.get(path.name) == fp:
        if seen is not None:
            seen[path.name] = fp
        return []
    try:
        digest = sha256_file(path)
    except OSError as e:
        return [f"{path.name}: unreadable ({e.strerror or e})"]
    if digest != rec["sha256"]:
        return [
            f"{path.name}: sha256 does not match the manifest (the bytes changed after "
            "the save: disk corruption or an edit)"
        ]
    if seen is not None:
        seen[path.name] = fp
    return []


def _shape_problems(m: Any) -> list[str]:
    if not isinstance(m, dict):
        return [f"{MANIFEST}: expected a JSON object"]
    if m.get("format") != FORMAT:
        return [f"{MANIFEST}: not a trainwell checkpoint manifest (format={m.get('format')!r})"]
    version = m.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return [
            f"{MANIFEST}: format_version {version!r} is newer than this trainwell reads "
            f"(<= {FORMAT_VERSION}); upgrade trainwell to load it"
        ]
    problems = []
    if not isinstance(m.get("step"), int):
        problems.append(f"{MANIFEST}: 'step' must be an integer, got {m.get('step')!r}")
    files, parts = m.get("files"), m.get("parts")
    if not isinstance(files, dict) or not isinstance(parts, dict):
        return problems + [f"{MANIFEST}: 'files' and 'parts' must be objects"]
    for part, fname in parts.items():
        if not isinstance(fname, str) or not is_plain_name(fname):
            problems.append(f"{MANIFEST}: part {part!r} points at {fname!r}, not a plain file name")
        elif not _file_record_ok(files.get(fname)):
            problems.append(f"{MANIFEST}: no size and sha256 recorded for {fname!r}")
    if not isinstance(m.get("meta", {}), dict):
        problems.append(f"{MANIFEST}: 'meta' must be an object")
    return problems


def _file_record_ok(rec: Any) -> bool:
    return (
        isinstance(rec, dict)
        and isinstance(rec.get("bytes"), int)
        and isinstance(rec.get("sha256"), str)
    )
