"""Durable file-system steps: fsync a file or a directory, write a small file atomically, hash.

A rename is atomic but not durable until the directory holding it is fsynced; a file's
bytes are not durable until the file is fsynced. Without both, a power loss can leave a
renamed directory whose files are empty (metaseq's 0-byte shards).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HASH_CHUNK = 1 << 20
"""Bytes read per sha256 update: 1 MiB keeps the Python overhead negligible and memory flat."""


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (the caller renames or fsyncs the directory)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a reader sees the old file or the new one,
    never a half-written one (tmp file + fsync + rename + fsync of the directory)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_bytes_durable(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (used to tell a crashed save from one in flight)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
