"""Helpers of the fit tests: a run's logged numbers, and a run cut back to a checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def numbers(run_dir: Path) -> list[dict]:
    """The run's metrics rows without the timings (they differ between runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("sys/")} for r in rows]


def cut_back(src: Path, dst: Path, step: int) -> None:
    """``dst``: ``src`` as if its process had died right after the checkpoint at ``step``."""
    shutil.copytree(src, dst)
    for d in (dst / "checkpoints").glob("step-*"):
        if int(d.name.split("-")[1]) > step:
            shutil.rmtree(d)
