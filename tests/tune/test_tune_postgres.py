"""Many machines, one study: `trainwell tune` processes with their own study directories
join one study through PostgreSQL (a real server the test session starts) and run exactly
its trials, each point once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import tomli_w

from trainwell.tune.study import load_handle, read_view

ROOT = Path(__file__).resolve().parents[2]


def test_two_tune_processes_share_one_study_through_postgresql(postgres_url, tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    study = {
        "task": {"name": "digits"}, "train": {"steps": 30, "eval_every": 10},
        "schedule": {"warmup_steps": 0}, "log": {"tensorboard": False},
        "tune": {"name": name, "trials": 8, "space": {"optim.lr": {"log": [1e-4, 3e-2]},
                                                      "optim.weight_decay": {"log": [1e-3, 1.0]}}},
    }
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(study))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "trainwell", "tune", str(path), "--storage", postgres_url,
                               "--study-dir", str(tmp_path / f"machine{i}")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    views = [read_view(load_handle(tmp_path / f"machine{i}")) for i in range(2)]
    for view in views:  # each machine reads the whole study back from the shared storage
        assert [t.number for t in view.trials] == list(range(8))
        assert all(t.state == "complete" for t in view.trials)
    trials = views[0].trials
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 8
    ran_here = [sorted(p.name for p in (tmp_path / f"machine{i}" / "trials").glob("*")) for i in range(2)]
    assert sorted(ran_here[0] + ran_here[1]) == [f"{i:04d}" for i in range(8)]  # each trial ran once
    assert (tmp_path / "machine0" / "storage.json").is_file()
