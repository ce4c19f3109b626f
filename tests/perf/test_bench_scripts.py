"""Smoke tests of the benchmark scripts (they are measured by hand; these keep them runnable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_overhead_quick_probe_runs_and_reports(tmp_path: Path) -> None:
    out_json = tmp_path / "overhead.json"
    proc = run_script("benchmarks/overhead.py", "--quick", "--workloads", "probe",
                      "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "== probe:" in out
    assert "trainwell/plain: wall ratio" in out and "CPU ratio" in out
    assert "notb/plain: wall ratio" in out
    # the plain loop and trainwell train the same model on the same data: same losses
    assert "losses trainwell vs plain: max relative difference" in out
    assert "MISMATCH" not in out, out
    import json

    (res,) = json.loads(out_json.read_text())
    assert set(res["runs"]) == {"plain", "trainwell", "notb"}
    assert all(len(v) == 2 for v in res["runs"].values())  # --quick: 2 interleaved rounds
    assert all(r["ms_per_step"] > 0 and r["cpu_ms_per_step"] > 0 for v in res["runs"].values() for r in v)


@pytest.mark.slow
def test_gpu_gpt_skips_cleanly_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the skip path does not apply")
    proc = run_script("benchmarks/gpu_gpt.py", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA GPU here; skipped" in proc.stdout


@pytest.mark.slow
def test_gpu_gpt_tiny_cpu_smoke() -> None:
    proc = run_script("benchmarks/gpu_gpt.py", "--tiny", "--device", "cpu", "--no-compile",
                      "--steps", "2", "--warmup", "1", "--batch", "2", "--threads", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokens/s" in proc.stdout
    assert "MFU unknown" in proc.stdout  # a CPU has no peak in the table
