from __future__ import annotations

import numpy as np
import pytest

from trainwell.data.arrays import load_digits_arrays, load_npz_classification
from trainwell.errors import DataError


def _save(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_good_file_loads_with_int_labels(tmp_path):
    path = _save(tmp_path, x=np.ones((4, 2, 2), dtype=np.uint8), y=np.array([0.0, 1.0, 2.0, 1.0]))
    x, y = load_npz_classification(path)
    assert x.shape == (4, 2, 2) and x.dtype == np.float64
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.ones((3, 2))}, r"missing array\(s\) 'y'; it has 'x'"),
        (
            {"inputs": np.ones((3, 2)), "labels": np.zeros(3)},
            r"missing array\(s\) 'x', 'y'; it has 'inputs', 'labels'",
        ),
        ({"x": np.ones((3, 2)), "y": np.zeros(4, dtype=int)}, r"x has 3 samples but y has 4"),
        ({"x": np.ones(3), "y": np.zeros(3, dtype=int)}, r"x must have shape \(N, features"),
        ({"x": np.ones((3, 2)), "y": np.zeros((3, 1), dtype=int)}, r"y must have shape \(N,\)"),
        ({"x": np.ones((3, 2)), "y": np.array([0.5, 1, 0])}, r"integer class labels"),
        ({"x": np.ones((3, 2)), "y": np.array([0, -1, 0])}, r"labels 0\.\.C-1, found -1"),
        ({"x": np.array([[np.nan, 1], [0, 0], [1, 1]]), "y": np.zeros(3, dtype=int)}, r"NaN"),
        ({"x": np.ones((1, 2)), "y": np.zeros(1, dtype=int)}, r"at least 2 samples"),
    ],
)
def test_bad_arrays_are_data_errors_naming_task_data(tmp_path, arrays, message):
    path = _save(tmp_path, **arrays)
    with pytest.raises(DataError, match=r"task\.data = .*d\.npz.*" + message):
        load_npz_classification(path)


def test_missing_folder_and_non_npz_files(tmp_path):
    with pytest.raises(DataError, match=r"task\.data = .*nope\.npz.*no such file"):
        load_npz_classification(tmp_path / "nope.npz")
    with pytest.raises(DataError, match=r"is a folder"):
        load_npz_classification(tmp_path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"not an \.npz archive"):
        load_npz_classification(junk)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(DataError, match=r"single array"):
        load_npz_classification(single)


def test_digits_arrays():
    x, y = load_digits_arrays()
    assert x.shape == (1797, 8, 8) and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 16 and set(np.unique(y)) == set(range(10))
