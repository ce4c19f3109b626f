"""The project's lint config holds in CI: ruff over the sources, McCabe complexity <= 15
(pyproject.toml), so that no function grows past reading top to bottom."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return [exe]


def test_ruff_is_clean_with_the_complexity_limit():
    done = subprocess.run([*ruff(), "check", "src", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_complexity_limit_is_configured():
    done = subprocess.run([*ruff(), "check", "--show-settings", "src/trainwell/train/loop.py"], cwd=ROOT,
                          capture_output=True, text=True)
    assert "max_complexity = 15" in done.stdout.replace(" ", " ")
