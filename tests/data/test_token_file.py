from __future__ import annotations

import numpy as np
import pytest

from trainwell.data.token_file import load_token_bin
from trainwell.errors import DataError


@pytest.mark.parametrize(("max_token", "vocab"), [(63, 64), (64, 128), (100, 128), (50256, 50304)])
def test_vocab_is_max_plus_one_rounded_to_64(tmp_path, max_token, vocab):
    tokens = np.arange(1000, dtype=np.uint16) % 50
    tokens[17] = max_token
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    assert load_token_bin(path, 0.1).vocab_size == vocab


def test_validation_is_the_last_fraction_of_tokens(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16)
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    split = load_token_bin(path, 0.1)
    assert split.train.dtype == np.uint16
    assert np.array_equal(split.train, tokens[:900]) and np.array_equal(split.val, tokens[900:])


def test_empty_and_odd_sized_files_are_data_errors(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"task\.data = .*empty\.bin.*empty"):
        load_token_bin(empty, 0.1)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"abc")
    with pytest.raises(DataError, match=r"task\.data = .*3 bytes.*uint16"):
        load_token_bin(odd, 0.1)
