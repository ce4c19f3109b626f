"""Byte corpora for language models: the Python standard library's source, or a folder of
text files. Files are split into training and validation BY FILE (a stable hash of the
relative path), then concatenated with a separator byte into uint8 arrays. A test split
(``test_fraction`` > 0) is taken from the training files the same way, by the next band of
the hash, so validation holds the same files with or without one.

Splitting by file keeps validation honest: windows cut from one file share names and
idioms, so a split by position would let the model see most of each validation file while
training.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainwell.data.cache import cache_key, cached_arrays
from trainwell.data.split import held_out_by_hash, split_by_hash
from trainwell.errors import DataError

SEPARATOR = 0
"""Byte between files (NUL, absent from text), so the model can learn where a file starts."""

STDLIB_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})
"""Folders left out of the standard-library corpus. site-packages/dist-packages hold
third-party code that differs from one environment to the next (the corpus, and so the
numbers, would depend on what happens to be installed). Test suites are left out because
distributions ship them separately (Debian's libpython3.x-testsuite), so including them would
change the corpus between installs of the same Python, and because they hold deliberately
odd files (bad encodings, generated data) that are not representative source code."""


@dataclass(frozen=True)
class TokenSplit:
    """Token streams of the two splits, ready to cut into windows."""

    train: np.ndarray
    """(N_train,) uint8 bytes or uint16 tokens, files concatenated in path order."""
    val: np.ndarray
    """(N_val,) same dtype, the held-out files."""
    vocab_size: int
    n_train_files: int = 0
    n_val_files: int = 0
    test: np.ndarray | None = None
    """(N_test,) same dtype, the test files; None without a test split."""
    n_test_files: int = 0

    def summary(self) -> str:
        test = self.test is not None
        files = (
            f" from {self.n_train_files} / {self.n_val_files}"
            + (f" / {self.n_test_files}" if test else "") + " files"
            if self.n_train_files else ""
        )
        tail = f" / {len(self.test):,} test" if self.test is not None else ""
        return f"{len(self.train):,} train / {len(self.val):,} val{tail} tokens{files}"


def stdlib_root() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[str]:
    """Relative POSIX paths of the standard library's ``*.py`` files, sorted, without
    STDLIB_SKIP_DIRS."""
    return _walk(root, lambda name: name.endswith(".py"), STDLIB_SKIP_DIRS)


def folder_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root``, sorted. Hidden files and folders
    (names starting with '.') are left out: they are version-control internals or editor
    state (.git objects are compressed binary), not the text the user means."""
    return _walk(root, lambda name: True, frozenset())


def load_stdlib_corpus(val_fraction: float, test_fraction: float = 0.0) -> TokenSplit:
    """The byte corpus of the standard library of the running Python."""
    root = stdlib_root()
    files = stdlib_files(root)
    if not files:
        raise DataError(
            f"task.data is empty, so bytes-lm reads the Python standard library, but "
            f"{root} has no .py files; set task.data to a folder of text files"
        )
    return load_byte_corpus(
        root, files, val_fraction, tag=f"stdlib-py{sys.version_info[0]}{sys.version_info[1]}",
        test_fraction=test_fraction,
    )


def load_text_folder(path: Path, val_fraction: float, test_fraction: float = 0.0) -> TokenSplit:
    """The byte corpus of a user's folder of text files (or of a single text file)."""
    if path.is_file():
        return load_byte_corpus(path.parent, [path.name], val_fraction, tag="text",
                                test_fraction=test_fraction)
    files = folder_files(path)
    if not files:
        raise DataError(f"task.data = {str(path)!r}: the folder has no (non-hidden) files")
    if all(_stat(path / f)[0] == 0 for f in files):
        raise DataError(f"task.data = {str(path)!r}: all {len(files)} files are empty")
    return load_byte_corpus(path, files, val_fraction, tag="text", test_fraction=test_fraction)


def load_byte_corpus(
    root: Path, files: list[str], val_fraction: float, tag: str, test_fraction: float = 0.0
) -> TokenSplit:
    """Concatenate ``files`` (relative to ``root``) into train and val (and test) byte streams.

    Two or more files are split by a stable hash of the relative path (data.split). A single
    file is split by position instead (the last ``val_fraction`` of its bytes, and the
    ``test_fraction`` before them), so that one big text file (e.g. a book) works too. The
    result is cached, keyed by the Python version, the folder, the fractions and every
    file's path, size and mtime.
    """
    stats = [_stat(root / f) for f in files]
    key = cache_key("bytes-v2", sys.version, str(root.resolve()), val_fraction, test_fraction, files, stats)

    def build() -> dict[str, np.ndarray]:
        if len(files) == 1:
            return _split_by_position(_read_bytes(root / files[0]), val_fraction, test_fraction)
        train, val = split_by_hash(files, val_fraction)
        train, test = held_out_by_hash(train, val_fraction, test_fraction)
        return {
            "train": _concat(root, train),
            "val": _concat(root, val),
            "test": _concat(root, test),
            "n_files": np.array([len(train), len(val), len(test)]),
        }

    arrays = cached_arrays(tag, key, build)
    n_train, n_val, n_test = (int(n) for n in arrays["n_files"])
    test = arrays["test"] if test_fraction > 0 else None
    return TokenSplit(arrays["train"], arrays["val"], 256, n_train, n_val, test, n_test)


def _split_by_position(data: np.ndarray, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """One file: validation is its last ``val_fraction``, test the ``test_fraction`` before."""
    n_val, n_test = int(len(data) * val_fraction), int(len(data) * test_fraction)
    end = len(data) - n_val
    return {
        "train": data[: end - n_test],
        "val": data[end:],
        "test": data[end - n_test : end],
        "n_files": np.array([1, 1, 1 if n_test else 0]),
    }


def _walk(root: Path, keep: Callable[[str], bool], skip_dirs: frozenset[str]) -> list[str]:
    out = []
    for folder, dirs, names in os.walk(root):
        # prune in place so os.walk does not descend (site-packages alone has >10k files)
        dirs[:] = [
            d for d in dirs if d not in skip_dirs and not d.startswith(".") and d != "__pycache__"
        ]
        rel = Path(folder).relative_to(root)
        for name in names:
            if keep(name) and not name.startswith("."):
                out.append((rel / name).as_posix())
    return sorted(out)


def _stat(path: Path) -> list[int]:
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"task.data: cannot read {path}: {e.strerror}") from None
    return [st.st_size, st.st_mtime_ns]


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as e:
        raise DataError(f"task.data: cannot read {path}: {e.strerror}") from None


def _concat(root: Path, files: list[str]) -> np.ndarray:
    """(sum of sizes + len(files),) uint8: each file followed by SEPARATOR."""
    sep = np.array([SEPARATOR], dtype=np.uint8)
    parts = []
    for f in files:
        parts += [_read_bytes(root / f), sep]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
