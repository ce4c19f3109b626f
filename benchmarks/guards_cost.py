"""What the stability autopilot costs: the same training run with the guards on (the
default) and off (`guards.enabled = false`), interleaved A B A B in separate processes so
that machine drift cancels. Prints the median time per step of each, their ratio with its
spread, and checks that both runs computed the same losses (a clean run: the guards never
act, so the numbers must match exactly).

    python benchmarks/guards_cost.py            # digits MLP, 5 runs each
    python benchmarks/guards_cost.py --runs 7 --steps 600

Goal: guards on / guards off <= 1.01.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUPS = {"on": [], "off": ["guards.enabled=false"]}


def one(setup: str, steps: int, out: Path) -> dict:
    """Runs in a child process: train, then time the steps (after a warm-up)."""
    import torch

    from trainwell.config import load_config
    from trainwell.train.loop import run

    torch.set_num_threads(1)
    overrides = ["task.name=digits", f"train.steps={steps}", "train.eval_every=0", "log.tensorboard=false",
                 "checkpoint.every_steps=0", "checkpoint.every_minutes=0", "instruments.preset=off", "log.every=1",
                 *SETUPS[setup]]
    result = run(load_config(overrides=overrides), run_dir=out, progress=False)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["sys/step_time_s"] for r in rows if "sys/step_time_s" in r][steps // 10:]  # skip warm-up
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    return {"ms_per_step": 1000 * statistics.median(times), "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--one", choices=list(SETUPS))
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, Path(args.out))))
        return
    results: dict[str, list[dict]] = {k: [] for k in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for setup in SETUPS:  # interleaved: on, off, on, off, ...
                cmd = [sys.executable, __file__, "--one", setup, "--steps", str(args.steps), "--out", f"{tmp}/{setup}{i}"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                results[setup].append(json.loads(out))
    on = [r["ms_per_step"] for r in results["on"]]
    off = [r["ms_per_step"] for r in results["off"]]
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    same = all(r["losses"] == results["on"][0]["losses"] for r in results["on"] + results["off"])
    print(f"digits MLP, {args.steps} steps, {args.runs} interleaved runs each, 1 thread, {time.strftime('%Y-%m-%d')}")
    print(f"guards on : median {statistics.median(on):.3f} ms/step (min {min(on):.3f}, max {max(on):.3f})")
    print(f"guards off: median {statistics.median(off):.3f} ms/step (min {min(off):.3f}, max {max(off):.3f})")
    print(f"on/off ratio per pair: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    print(f"identical losses in every run: {same}")


if __name__ == "__main__":
    main()
