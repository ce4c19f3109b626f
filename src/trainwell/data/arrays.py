"""Labelled arrays for classification: scikit-learn's digits, or a user's ``.npz`` file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from trainwell.errors import DataError


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (UCI, ships with scikit-learn, no download):
    x (1797, 8, 8) float64 in [0, 16], y (1797,) int64 in [0, 9]."""
    from sklearn.datasets import load_digits  # slow import (~0.5 s), only when used

    d = load_digits()
    return d.images, d.target.astype(np.int64)


def load_npz_classification(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x (N, ...) float and y (N,) int64 labels >= 0 from an .npz with arrays 'x' and 'y'."""
    where = f"task.data = {str(path)!r}"
    if not path.exists():
        raise DataError(f"{where}: no such file; expected an .npz file with arrays 'x' and 'y'")
    if path.is_dir():
        raise DataError(f"{where} is a folder; expected an .npz file with arrays 'x' and 'y'")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        # numpy reads any non-archive as a pickle and then refuses it: its message misleads
        raise DataError(
            f"{where}: not an .npz archive; save one with np.savez(path, x=x, y=y)"
        ) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(
            f"{where}: holds a single array, not an .npz archive; "
            "save one with np.savez(path, x=x, y=y)"
        )
    with z:
        missing = [k for k in ("x", "y") if k not in z.files]
        if missing:
            raise DataError(
                f"{where}: missing array(s) {', '.join(map(repr, missing))}; it has "
                f"{', '.join(map(repr, z.files)) or 'none'}; save with np.savez(path, x=x, y=y)"
            )
        try:
            x, y = z["x"], z["y"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{where}: cannot read arrays 'x' and 'y' ({e})") from None
    return _check(x, y, where)


def _check(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim < 2:
        raise DataError(f"{where}: x must have shape (N, features...), got {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{where}: y must have shape (N,) of class labels, got {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{where}: x has {len(x)} samples but y has {len(y)}; they must agree")
    if len(y) < 2:
        raise DataError(f"{where}: needs at least 2 samples to hold some out, got {len(y)}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{where}: x must be numeric, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: x holds NaN or infinite values")
    if np.issubdtype(y.dtype, np.floating) and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)  # labels saved as floats, e.g. 3.0
    if not np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_:
        raise DataError(f"{where}: y must hold integer class labels 0..C-1, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{where}: y must hold class labels 0..C-1, found {y.min()}")
    return x.astype(np.float64), y
