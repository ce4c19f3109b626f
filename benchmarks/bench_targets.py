"""Set the AlgoPerf validation targets of the CPU suite on this machine kind.

    python benchmarks/bench_targets.py [--workers 2] [--trials 8] [--seeds 5] [--problems ...]

AlgoPerf's way (Dahl et al. 2023), scaled to a laptop: each baseline (AdamW, NAdamW,
Nesterov momentum) is tuned on each problem with a quasi-random search of its space and
AlgoPerf's schedule (5% warmup, then cosine); the best configuration over the baselines (by
its best validation value) is rerun with more seeds; the target is the median over those
runs of their best validation value, and the time budget (``max_runtime_s``) is 4/3 of the
median training time of those runs (AlgoPerf v0.5: the target-setting runtime plus a
third). AlgoPerf tunes each baseline with 200 trials and reruns with 20 seeds; the defaults
here (8 and 5) make the whole suite take minutes, and the printed lines say what was used.
The figures go into ``src/trainwell/bench/problems.py`` by hand, with the machine and date.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
from pathlib import Path

from trainwell.bench.algorithms import merged, resolve_algorithm
from trainwell.bench.config import _schedule
from trainwell.bench.problems import CPU_SUITE, PROBLEMS
from trainwell.sinks import METRICS_FILE, read_jsonl
from trainwell.tune import tune

BASELINES = ("adamw", "nadam", "momentum")


def set_target(name: str, root: Path, trials: int, seeds: int, workers: int) -> dict:
    problem = PROBLEMS.get(name)
    best = None
    for algorithm in BASELINES:
        algo = resolve_algorithm(algorithm)
        study = merged(problem.run_config(), algo.config, {"schedule": _schedule("warmup_cosine", problem),
                                                           "log": {"every": 1}})
        study["tune"] = {"name": f"{name}-{algorithm}", "trials": trials, "objective": "best",
                         "space": dict(algo.space)}
        res = tune(study, study_dir=root / name / algorithm, workers=workers, out=io.StringIO(),
                   rerun_best=0, seeds=0)
        if res.best is not None and (best is None or res.view.better(res.best.value, best[1].best.value)):
            best = (algorithm, res)
    assert best is not None, f"no baseline trained on {name}"
    algorithm, res = best
    final = tune(root / name / algorithm / "study.toml", study_dir=root / name / algorithm, workers=workers,
                 out=io.StringIO(), rerun_best=1, seeds=seeds - 1)
    group = [t for t in final.trials if t.number == res.best.number or t.rerun_of == res.best.number]
    values = [t.value for t in group if t.value is not None]
    target = statistics.median(values)
    # each run's whole training time: its steps' times (one metrics row per step)
    times = [sum(r.get("sys/step_time_s", 0.0) for r in read_jsonl(Path(t.run_dir) / METRICS_FILE)) for t in group]
    return {"problem": name, "metric": final.view.metric, "baseline": algorithm, "params": res.best.params,
            "values": values, "target": target, "train_time_s": statistics.median(times),
            "max_runtime_s": round(4 / 3 * statistics.median(times), 1), "trials": trials, "seeds": len(values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--problems", nargs="*", default=list(CPU_SUITE))
    p.add_argument("--out", help="where the studies go (default: a temporary directory)")
    args = p.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-targets-"))
    print(f"studies in {root}; {args.trials} trials per baseline, {args.seeds} seeds of the best")
    for name in args.problems:
        print(json.dumps(set_target(name, root, args.trials, args.seeds, args.workers)), flush=True)


if __name__ == "__main__":
    main()
