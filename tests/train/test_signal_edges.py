"""A SIGTERM after the last step (during the final evaluation) lets the run end as usual:
final checkpoint, summary, every line printed, exit 0. The run is a subprocess that sends
the signal to itself at that moment, so the timing is exact."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = """
import os, signal, sys
import torch
from torch import nn
from torch.utils.data import TensorDataset
import trainwell

run_dir = sys.argv[1]
g = torch.Generator().manual_seed(0)
x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)

calls = []
def accuracy(out, target):
    if not calls:  # the first evaluation is the final one (eval_every = 0)
        os.kill(os.getpid(), signal.SIGTERM)
    calls.append(1)
    return (out.argmax(-1) == target).float().mean()

try:
    trainwell.fit(nn.Linear(4, 2), TensorDataset(x, y), nn.functional.cross_entropy,
                  {"train": {"steps": 12, "batch_size": 16, "eval_every": 0}, "checkpoint": {"every_steps": 5}},
                  eval_data=TensorDataset(x, y), metrics={"accuracy": accuracy}, run_dir=run_dir)
except trainwell.TrainwellError as e:
    print(f"stopped: {e}", flush=True)
    sys.exit(getattr(e, "exit_code", 1))
print("returned", flush=True)
"""


def test_a_sigterm_during_the_final_evaluation_lets_the_run_end(tmp_path):
    run_dir = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(run_dir)],
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "returned" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 12 and "eval/accuracy" in summary["final"]
    assert (run_dir / "checkpoints" / "step-00000012").is_dir()
