from __future__ import annotations

import numpy as np
import pytest

from trainwell.data.corpus import (
    SEPARATOR,
    folder_files,
    load_text_folder,
    stdlib_files,
    stdlib_root,
)
from trainwell.data.split import split_by_hash
from trainwell.errors import DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", str(tmp_path / "cache"))


def _folder(tmp_path, n=12):
    root = tmp_path / "texts"
    contents = {}
    for i in range(n):
        rel = f"sub{i % 3}/file{i}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data = f"text of file {i}\n".encode() * (i + 1)
        (root / rel).write_bytes(data)
        contents[rel] = data
    (root / ".git").mkdir()
    (root / ".git" / "objects").write_bytes(b"\xff\xfe binary")
    (root / ".hidden.txt").write_bytes(b"hidden")
    return root, contents


def _joined(contents, files):
    return b"".join(contents[f] + bytes([SEPARATOR]) for f in files)


def test_folder_is_split_by_file_and_concatenated_in_path_order(tmp_path):
    root, contents = _folder(tmp_path)
    files = folder_files(root)
    assert files == sorted(contents)  # hidden files and folders are left out
    split = load_text_folder(root, 0.25)
    train, val = split_by_hash(files, 0.25)
    assert train and val and set(train).isdisjoint(val)
    assert split.train.dtype == np.uint8 and split.vocab_size == 256
    assert split.train.tobytes() == _joined(contents, train)
    assert split.val.tobytes() == _joined(contents, val)
    assert (split.n_train_files, split.n_val_files) == (len(train), len(val))


def test_loading_twice_gives_the_same_bytes_and_a_changed_file_is_reread(tmp_path):
    root, contents = _folder(tmp_path)
    a = load_text_folder(root, 0.25)
    b = load_text_folder(root, 0.25)  # from the cache
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    rel = sorted(contents)[0]
    (root / rel).write_bytes(b"changed and longer than before\n")
    c = load_text_folder(root, 0.25)
    assert len(c.train) + len(c.val) != len(a.train) + len(a.val)


def test_a_single_file_is_split_by_position(tmp_path):
    path = tmp_path / "book.txt"
    data = bytes(range(256)) * 4
    path.write_bytes(data)
    split = load_text_folder(path, 0.25)
    assert split.train.tobytes() == data[:768] and split.val.tobytes() == data[768:]


def test_empty_folder_is_a_data_error_naming_task_data(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("x")
    with pytest.raises(DataError, match=r"task\.data.*no \(non-hidden\) files"):
        load_text_folder(tmp_path / "empty", 0.1)


def test_stdlib_files_leave_out_site_packages_and_tests(tmp_path):
    root = tmp_path / "lib"
    for rel in [
        "os.py",
        "json/__init__.py",
        "site-packages/numpy/x.py",
        "test/test_os.py",
        "unittest/test/test_case.py",
        "idlelib/idle_test/t.py",
        "json/tests/t.py",
        "__pycache__/os.cpython-311.pyc",
        "README.txt",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x = 1\n")
    assert stdlib_files(root) == ["json/__init__.py", "os.py"]


def test_the_real_stdlib_has_hundreds_of_files():
    files = stdlib_files(stdlib_root())
    assert len(files) > 300
    assert "os.py" in files
    assert not any(f.startswith(("site-packages/", "test/")) for f in files)
