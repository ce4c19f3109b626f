from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from trainwell.data.split import split_by_hash, stratified_split, unit_hash

SRC = Path(__file__).resolve().parents[2] / "src"


def test_unit_hash_is_stable_across_processes_and_hash_seeds():
    # Python's hash() of a str changes with PYTHONHASHSEED; the split must not
    code = "from trainwell.data.split import unit_hash; print(repr(unit_hash('pkg/mod.py')))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == unit_hash("pkg/mod.py")
    assert 0.0 <= unit_hash("pkg/mod.py") < 1.0
    assert unit_hash("a.py") != unit_hash("b.py")


def test_split_by_hash_is_disjoint_complete_ordered_and_near_the_fraction():
    keys = [f"dir{i % 7}/file{i}.py" for i in range(2000)]
    train, val = split_by_hash(keys, 0.1)
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == sorted(keys)
    assert train == [k for k in keys if k in set(train)]  # input order kept
    assert 0.07 < len(val) / len(keys) < 0.13
    assert split_by_hash(keys, 0.1) == (train, val)


def test_adding_a_file_never_moves_another():
    keys = [f"f{i}.txt" for i in range(300)]
    _, val = split_by_hash(keys, 0.2)
    _, val_more = split_by_hash(keys + ["new.txt"], 0.2)
    assert set(val_more) - {"new.txt"} == set(val)


def test_few_keys_still_fill_both_sides():
    assert split_by_hash(["only.txt"], 0.5) == (["only.txt"], [])
    for n in (2, 3, 5):
        keys = [f"k{i}" for i in range(n)]
        for frac in (1e-6, 0.999999):
            train, val = split_by_hash(keys, frac)
            assert train and val and sorted(train + val) == keys


def test_stratified_split_keeps_class_proportions_and_is_deterministic():
    y = np.repeat(np.arange(5), [100, 50, 30, 20, 10])
    train, test = stratified_split(y, 0.2, seed=0)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
    assert len(test) == 42  # ceil(0.2 * 210)
    for c, n in zip(range(5), [100, 50, 30, 20, 10], strict=True):
        assert abs((y[test] == c).sum() - 0.2 * n) <= 1
    again = stratified_split(y, 0.2, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_stratified_split_falls_back_when_a_class_has_one_sample():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    train, test = stratified_split(y, 0.3, seed=0)
    assert len(train) + len(test) == len(y) and len(test) >= 1
