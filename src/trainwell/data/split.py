"""Deterministic train/validation splits: by a stable hash of a name, or stratified by label.

Splits never depend on Python's ``hash()`` (randomised per process by PYTHONHASHSEED) nor
on the run's seed: the same data gives the same split on every machine and every run, so
validation numbers stay comparable across runs and seeds.
"""

from __future__ import annotations

import hashlib

import numpy as np


def unit_hash(key: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``key`` (first 64 bits of its SHA-256)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_by_hash(keys: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split ``keys`` (file paths) into (train, val): a key goes to validation when its
    ``unit_hash`` is below ``val_fraction``. Adding or removing one file never moves another.

    With few keys the hash can leave a side empty; then the key with the lowest hash goes to
    validation (or the highest stays in training), so both sides are non-empty whenever
    there are at least two keys. Both lists keep the order of ``keys``.
    """
    if len(keys) < 2:
        return list(keys), []
    h = {k: unit_hash(k) for k in keys}
    val = {k for k in keys if h[k] < val_fraction}
    if not val:
        val = {min(keys, key=h.__getitem__)}
    if len(val) == len(keys):
        val.discard(max(keys, key=h.__getitem__))
    return [k for k in keys if k not in val], [k for k in keys if k in val]


def stratified_split(
    y: np.ndarray, test_fraction: float | int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx), sorted, with each class in about the same proportion on both
    sides (scikit-learn's stratified shuffle). Falls back to a plain shuffled split when a
    class has a single sample or the test side has fewer slots than there are classes. ``seed`` is fixed by
    callers, not the run's seed, so the held-out set never changes between runs. An int
    ``test_fraction`` is a number of samples (scikit-learn's ``test_size``)."""
    from sklearn.model_selection import train_test_split  # slow import (~0.5 s), only when used

    idx = np.arange(len(y))
    try:
        train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    except ValueError:
        # a class with one sample, or fewer test slots than classes: stratifying is impossible
        train, test = train_test_split(idx, test_size=test_fraction, random_state=seed)
    return np.sort(train), np.sort(test)


def held_out_by_hash(keys: list[str], start: float, fraction: float) -> tuple[list[str], list[str]]:
    """Split training ``keys`` into (train, test): a key goes to test when its ``unit_hash``
    lies in [start, start + fraction). With ``start`` the validation fraction, validation
    (hashes below it) is untouched and the two held-out sides cannot overlap. A non-empty
    test side is guaranteed when there are at least two keys (the lowest hash above
    ``start`` moves over); both lists keep the order of ``keys``."""
    if fraction <= 0 or len(keys) < 2:
        return list(keys), []
    h = {k: unit_hash(k) for k in keys}
    test = {k for k in keys if start <= h[k] < start + fraction}
    if not test:
        test = {min(keys, key=lambda k: (h[k] < start, h[k]))}
    if len(test) == len(keys):
        test.discard(max(keys, key=h.__getitem__))
    return [k for k in keys if k not in test], [k for k in keys if k in test]


def split_off_test(
    y: np.ndarray, train_idx: np.ndarray, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx), sorted: ``n_test`` samples of ``train_idx`` moved to a test
    split, stratified by ``y`` like ``stratified_split``. Taking them from the training side
    leaves the validation split exactly as it was; ``seed`` is fixed by callers, so the test
    split never changes between runs."""
    if n_test <= 0:
        return np.sort(train_idx), np.zeros(0, dtype=train_idx.dtype)
    rest, test = stratified_split(y[train_idx], int(n_test), seed)
    return np.sort(train_idx[rest]), np.sort(train_idx[test])
