"""Fixtures of the report tests (the builders live in report_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import make_run


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    """A run directory with a NaN, a spike, a rollback, logbook events, inst/* keys and histograms."""
    return make_run(tmp_path / "run")
