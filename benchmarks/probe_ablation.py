"""Where trainwell's fixed cost per step goes: its defaults against the same run with one
part switched off, on the probe of benchmarks/peers.py (one Linear(64, 10), batch 128: a
step is almost nothing but fixed cost), all in one process taking turns of 7 steps
(benchmarks/lockstep.py), with the plain loop and HF Accelerate for scale.

    python benchmarks/probe_ablation.py   # re-runs itself in benchmarks/.peers-venv (as peers.py)

Each line: the variant's CPU time per step over the defaults' (median over blocks of rounds,
bootstrap 95% interval) and the difference per step (mean).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402

VARIANTS = {
    "plain": ("plain", ()),
    "defaults": ("trainwell", ()),
    "no_instruments": ("trainwell", ("instruments.preset=off",)),
    "no_guards": ("trainwell", ("guards.enabled=false",)),
    "no_logging": ("trainwell", ("log.every=100000", "log.tensorboard=false")),
    "no_tensorboard": ("trainwell", ("log.tensorboard=false",)),
    "accelerate": ("accelerate", ()),
}
"""label -> (the setup of peers_loops, its overrides)."""
STEPS, SKIP, BLOCK = 1500, 105, 10


def main() -> None:
    peers.ensure_venv()
    import lockstep
    import torch
    from peers_loops import RUNNERS

    torch.set_num_threads(1)
    labels = list(VARIANTS)
    bodies = [functools.partial(RUNNERS[setup], peers.prepare("probe", STEPS, extra), STEPS)
              for setup, extra in VARIANTS.values()]
    lock = lockstep.Lockstep(len(labels), BLOCK, turn=7)
    lock.install()
    load = os.getloadavg()[0]
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        lock.run(bodies)
    result = {"labels": labels, "turn": 7, "block": BLOCK, "wall": lock.wall, "cpu": lock.cpu, "first": lock.first}
    print(f"probe ablation, {STEPS} steps each, 1-min load {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    for line in lockstep.describe([result], [(s, "defaults") for s in labels if s != "defaults"], SKIP):
        if "(cpu)" in line:
            print(line)


if __name__ == "__main__":
    main()
