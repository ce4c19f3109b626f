"""The [checkpoint] section: strict, documented, validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainwell.checkpoint import CheckpointConfig


def test_defaults_and_docs():
    cfg = CheckpointConfig()
    assert cfg.keep_last >= 1 and cfg.on_error in ("continue", "stop")
    for name, info in CheckpointConfig.model_fields.items():
        assert info.description, f"{name} has no docstring"


@pytest.mark.parametrize(
    "bad",
    [{"keep_last": 0}, {"every_steps": -1}, {"every_minutes": -0.5}, {"on_error": "ignore"},
     {"keep_healty": 2}],
)
def test_invalid_values_fail(bad):
    with pytest.raises(ValidationError):
        CheckpointConfig(**bad)


def test_frozen():
    with pytest.raises(ValidationError):
        CheckpointConfig().keep_last = 5
