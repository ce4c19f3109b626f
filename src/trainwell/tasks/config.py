"""The ``[task]`` section: what to train and on which data."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from trainwell.section import Section


class TaskConfig(Section):
    name: str = "bytes-lm"
    """A built-in task (see `trainwell tasks`) or a user entry point 'my_pkg.my_module:make_task' returning a Task."""
    data: str | None = None
    """User data for a built-in model: a folder of text files or a uint16 token file (.bin) for bytes-lm, an .npz with x and y arrays for digits. Empty: the task's embedded data."""
    seq_len: int = Field(256, ge=2)
    """Context length in tokens for language-model tasks."""
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of the data held out for validation (by file for text corpora, deterministic)."""
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of the data held out as a test split, apart from validation and taken from the training side (so validation stays the same): evaluated only when asked (trainwell bench reports it), never during training. 0 = none. The quadratic task always has its own test draw and ignores this."""
    whiten: bool = False
    """Digits: whiten inputs (decorrelate with PCA statistics of the training split) on top of centring and scaling."""
    z_loss: float = Field(0.0, ge=0.0)
    """Weight of the z-loss log(Z)^2 for language models (PaLM uses 1e-4); 0 = off."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to a user task's entry point."""
