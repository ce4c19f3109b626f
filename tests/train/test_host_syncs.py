"""Exactly one host read per training step: every scalar the guards, the sinks and the
schedule need comes back in the step's one ``tolist()`` (train/reads.py). A second read
(``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()``) would be a
second device sync on a GPU. Counted on the CPU by wrapping torch.Tensor's reading methods
around the loop's step, with the autopilot on, accumulation, and the instruments off. The
loader's own host work on the sample ids (host tensors, before the batch reaches the device)
is not a device read and is not counted."""

from __future__ import annotations

import pytest
from sync_helpers import count_reads

from trainwell.config import load_config
from trainwell.train import loop
from trainwell.train.flight import build_flight


@pytest.mark.parametrize("task", ["digits", "bytes-lm"])
def test_one_host_read_per_step(task, tmp_path, monkeypatch):
    overrides = [f"task.name={task}", "train.steps=200", "train.accumulate=2", "train.eval_every=0",
                 "instruments.preset=off", "log.tensorboard=false", "log.every=1000", "checkpoint.every_steps=0",
                 "log.sample_chars=0"]
    if task == "bytes-lm":
        overrides += ["model.width=32", "model.depth=1", "model.heads=2", "task.seq_len=16", "train.batch_size=4"]
    f = build_flight(load_config(overrides=overrides), None, tmp_path / task, False, False, ())
    for _ in range(3):  # first steps: optimizer state, lazy initialisation
        loop._one_step(f)
    seen = count_reads(monkeypatch, f.st.loader)
    steps = 10
    for _ in range(steps):
        loop._one_step(f)
    monkeypatch.undo()
    assert dict(seen) == {"tolist": steps}, dict(seen)

