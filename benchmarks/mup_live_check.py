"""The live coordinate check on real runs: inst/mup_update/<role> at three widths under muP.

    python benchmarks/mup_live_check.py            # muP: the ratios should agree across widths
    python benchmarks/mup_live_check.py --one-lr   # every group at the base lr, as a scheduler
                                                   # that overwrites lr would do: hidden grows

The digits MLP of the coordinate check (64 -> w -> w -> 10, ReLU), widths 32, 128, 512 with
base 32, AdamW at a constant 3e-3, 41 steps, instruments every 10 steps, no autopilot.
Prints, per width, (step, input, hidden, output) for each measurement.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from tempfile import TemporaryDirectory

from trainwell.config import resolve
from trainwell.sinks.jsonl import read_jsonl
from trainwell.train import loop, step

LR = 3e-3


def one_lr() -> None:
    """Before every update, set each group's initial_lr to the base lr (undoing muP's per-role
    learning rates while keeping its init and multipliers)."""
    apply = step.apply_update

    def overwrite(st, factor=None):  # noqa: ANN001, ANN202
        for g in st.optimizer.param_groups:
            g["initial_lr"] = LR
        return apply(st, factor)

    loop.apply_update = overwrite


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one-lr", action="store_true")
    args = ap.parse_args()
    if args.one_lr:
        one_lr()
    with TemporaryDirectory() as tmp:
        for w in (32, 128, 512):
            cfg = resolve({"task": {"name": "digits"}, "train": {"steps": 41, "threads": 1, "eval_every": 0},
                           "model": {"depth": 2, "residual": False, "norm": "none", "activation": "relu",
                                     "width": w, "parametrization": "mup", "mup_base_width": 32},
                           "optim": {"lr": LR}, "schedule": {"name": "constant", "warmup_steps": 0},
                           "instruments": {"every": 10}, "log": {"progress": "off", "tensorboard": False},
                           "checkpoint": {"every_steps": 0, "final": False}, "guards": {"enabled": False}})
            r = loop.run(cfg, run_dir=Path(tmp) / str(w), progress=False)
            seen, rows = set(), []
            for x in read_jsonl(Path(r.run_dir) / "metrics.jsonl"):
                if "inst/mup_update/hidden" in x and x["step"] not in seen:
                    seen.add(x["step"])
                    rows.append((x["step"], *(round(x[f"inst/mup_update/{k}"], 4) for k in ("input", "hidden", "output"))))
            print(f"width {w}: (step, input, hidden, output) {rows}", flush=True)


if __name__ == "__main__":
    main()
