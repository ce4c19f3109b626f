"""What a study costs beyond its trials, and whether tuning beats the defaults.

    python benchmarks/tune_study.py digits   [--workers 2]   # 24 trials x 400 steps
    python benchmarks/tune_study.py bytes-lm [--workers 2]   # 16 trials x 300 steps, then seeds

digits: runs ``trainwell tune examples/studies/digits-adamw.toml`` as a user would (a new
process), and splits its wall time into the trials' own runs (each run's ``wall_time_s`` in
its summary.json: building the task and model, training, evaluating, checkpointing) and
everything else: process and worker start, Optuna's storage, the live view, the analysis.
overhead = 1 - (sum of the runs' wall times) / (workers x the study's wall time).

bytes-lm: runs the 16-trial study, reruns its best trial with 2 more seeds, runs the
default configuration at the same 300 steps with the same 3 seeds (a one-shot study), and
says whether the tuned configuration beats the default by more than the seed spread.
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

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "examples" / "studies"


def tune(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "trainwell", "tune", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"trainwell tune failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return wall, out.stdout


def show(study_dir: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "trainwell", "tune", "show", str(study_dir), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_walls(study: dict) -> list[float]:
    walls = []
    for t in study["trials"]:
        summary = Path(t["run_dir"]) / "summary.json"
        walls.append(json.loads(summary.read_text())["wall_time_s"])
    return walls


def digits(workers: int, root: Path) -> None:
    d = root / "digits"
    wall, stdout = tune([str(STUDIES / "digits-adamw.toml"), "--workers", str(workers), "--study-dir", str(d)])
    study = show(d)
    walls = run_walls(study)
    busy = sum(walls)
    overhead = 1 - busy / (workers * wall)
    states = [t["state"] for t in study["trials"]]
    print(stdout.splitlines()[-1] if stdout else "")
    print(f"digits study: {len(states)} trials ({states.count('complete')} complete, "
          f"{states.count('infeasible')} infeasible), {workers} workers")
    print(f"  study wall time            {wall:8.1f} s")
    print(f"  runs' own wall time, sum   {busy:8.1f} s  (median run {statistics.median(walls):.2f} s)")
    print(f"  not the trials' own runs   {workers * wall - busy:8.1f} worker-s = {overhead:.1%} of "
          f"{workers} x the wall time")
    best = study["best"]
    print(f"  best: trial {best['number']} value {best['value']:.4f} params {best['params']}")


def bytes_lm(workers: int, root: Path) -> None:
    d = root / "bytes-lm"
    wall, _ = tune([str(STUDIES / "bytes-lm.toml"), "--workers", str(workers), "--study-dir", str(d),
                    "--rerun-best", "1", "--seeds", "2"])
    study = show(d)
    best = study["best"]
    tuned = [t["value"] for t in study["trials"]
             if t["state"] == "complete" and (t["number"] == best["number"] or t.get("rerun_of") == best["number"])]
    base = root / "default"
    default_study = STUDIES / "bytes-lm.toml"
    wall2, _ = tune([str(default_study), "--study-dir", str(base), "--set", "tune.name=bytes-lm-default",
                     "--set", "tune.budget=\"oneshot\"", "--set", "tune.trials=1",
                     "--rerun-best", "1", "--seeds", "2"])
    default = [t["value"] for t in show(base)["trials"] if t["state"] == "complete"]
    print(f"bytes-lm study: {len(study['trials'])} trials in {wall:.0f} s; default runs in {wall2:.0f} s")
    print(f"  tuned   (trial {best['number']}, {best['params']}): " + _spread(tuned))
    print("  default (optim.lr 4e-3, weight_decay 0.1, warmup 50):  " + _spread(default))
    gap = statistics.mean(default) - statistics.mean(tuned)
    noise = max(statistics.stdev(tuned), statistics.stdev(default))
    verdict = "tuned is better" if gap > noise else ("default is better" if -gap > noise else "a tie")
    print(f"  difference {gap:+.4f} bpb (default - tuned), seed spread {noise:.4f}: {verdict}")
    for w in study["warnings"]:
        print(f"  warning: {w}")


def _spread(values: list[float]) -> str:
    return (f"mean {statistics.mean(values):.4f} bpb, std {statistics.stdev(values):.4f} over {len(values)} "
            f"seeds ({', '.join(f'{v:.4f}' for v in values)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=["digits", "bytes-lm"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="where the studies go (default: a temporary directory)")
    args = p.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tune-bench-"))
    print(f"studies in {root}")
    (digits if args.which == "digits" else bytes_lm)(args.workers, root)


if __name__ == "__main__":
    main()
