"""Running `trainwell train` as a user does (in its own processes, through --nproc), and
reading back what a run wrote: for the multi-process tests of tests/dist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def trainwell_train(run_dir: Path, *settings: str, nproc: int = 0, extra: tuple[str, ...] = (),
                    expect: int = 0, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``python -m trainwell train --run-dir RUN_DIR --set S ... [--nproc N] EXTRA``; asserts
    its exit status is ``expect`` (the output's tail as the message)."""
    cmd = [sys.executable, "-m", "trainwell", "train", "--run-dir", str(run_dir)]
    for item in settings:
        cmd += ["--set", item]
    if nproc:
        cmd += ["--nproc", str(nproc)]
    out = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=timeout, env=ENV)
    assert out.returncode == expect, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl's rows."""
    return jsonl(run_dir / "metrics.jsonl")


def events(run_dir: Path) -> list[dict]:
    """logbook.jsonl's events."""
    return jsonl(run_dir / "logbook.jsonl")


def losses(run_dir: Path) -> dict[int, float]:
    """train/loss by step, from metrics.jsonl."""
    return {r["step"]: r["train/loss"] for r in rows(run_dir) if "train/loss" in r}


def assert_close(a: dict[int, float], b: dict[int, float], tol: float, n: int) -> None:
    """The same ``n`` steps, every loss within ``tol``."""
    assert a.keys() == b.keys() and len(a) == n
    worst = max(abs(a[s] - b[s]) for s in a)
    assert worst <= tol, f"largest loss difference {worst:.3g} > {tol}"
