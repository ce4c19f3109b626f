"""Token files as nanoGPT's prepare scripts write them: a flat array of uint16 token ids
(``train.bin``), e.g. GPT-2 BPE tokens. The file is memory-mapped, never read whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainwell.data.corpus import TokenSplit
from trainwell.errors import DataError

VOCAB_MULTIPLE = 64
"""The vocabulary is rounded up to a multiple of 64: the output layer's matmul runs faster on
tensor cores (nanoGPT pads GPT-2's 50257 to 50304 for the same reason)."""


def load_token_bin(path: Path, val_fraction: float, test_fraction: float = 0.0) -> TokenSplit:
    """Split a uint16 token file into train (the first 1 - val_fraction of the tokens) and
    val (the rest); with ``test_fraction`` > 0, the test split is the ``test_fraction`` of
    the tokens just before val, taken from train. A token file has no file boundaries, so
    the split is by position. vocab_size = max token + 1, rounded up to a multiple of
    VOCAB_MULTIPLE."""
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"task.data = {str(path)!r}: the token file is empty")
    if size % 2:
        raise DataError(
            f"task.data = {str(path)!r}: {size} bytes is not a whole number of uint16 tokens; "
            "a .bin file must hold uint16 token ids (nanoGPT's format)"
        )
    tokens = np.memmap(path, dtype=np.uint16, mode="r")  # (N,)
    n_val, n_test = int(len(tokens) * val_fraction), int(len(tokens) * test_fraction)
    end = len(tokens) - n_val
    vocab = int(tokens.max()) + 1
    vocab = -(-vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    test = tokens[end - n_test : end] if test_fraction > 0 else None
    return TokenSplit(tokens[: end - n_test], tokens[end:], vocab, test=test)
