"""ModelSpec: what the task tells the model builder about its data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """The data-dependent sizes a reference model needs; the task fills in what it knows.

    The config says how the model looks (``[model]``); the spec says what it must fit
    (input shape, number of classes, vocabulary), so one config works across datasets.
    """

    input_shape: tuple[int, ...] | None = None
    """Per-sample input shape, e.g. (64,) for flat features or (1, 8, 8) for small images."""
    num_classes: int | None = None
    """Number of classifier outputs (logits)."""
    vocab_size: int | None = None
    """Vocabulary size of a language model."""
    seq_len: int | None = None
    """Maximum context length of a language model, in tokens."""
