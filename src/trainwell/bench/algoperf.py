"""AlgoPerf's time to result (Dahl et al. 2023; Kasimbeg et al. 2025), on trainwell runs.

A run's time is its accumulated training time (the sum of its steps' times, read from
metrics.jsonl with one row per step, and of the optimizer's weight swaps before each
evaluation; the evaluations themselves are not timed, as in AlgoPerf) up to the
first evaluation that reaches the problem's validation target; a run that never reaches it,
or only after the problem's ``max_runtime_s``, has an infinite time. An algorithm's time on
a problem is the median over its studies of the fastest trial of each (external tuning: 5
quasi-random trials x 3 studies); with self-tuning, each study is one run at the defaults.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from trainwell.sinks import METRICS_FILE, read_jsonl


def reached(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def time_to_target(run_dir: str | Path, metric: str, target: float, higher_is_better: bool,
                   max_runtime_s: float | None) -> tuple[float, str | None]:
    """(training seconds to the first evaluation at the target, None), or (inf, why not):
    'too slow' (reached after max_runtime_s), 'plateaued' (its best evaluation missed the
    target), 'no evaluation'."""
    elapsed, best = 0.0, None
    for row in read_jsonl(Path(run_dir) / METRICS_FILE):
        elapsed += float(row.get("sys/step_time_s", 0.0)) + float(row.get("sys/eval_swap_s", 0.0))
        value = row.get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        best = value if best is None or reached(value, best, higher_is_better) else best
        if reached(value, target, higher_is_better):
            if max_runtime_s is not None and elapsed > max_runtime_s:
                return math.inf, f"too slow: reached after {elapsed:.1f} s of training, the budget is {max_runtime_s:g} s"
            return elapsed, None
    if best is None:
        return math.inf, "no evaluation"
    return math.inf, f"plateaued: best {metric} {best:.4g}, target {target:.4g}"


def study_minima(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """minima[algorithm][problem] = the fastest run's time of each study (inf: none reached)."""
    fastest: dict[tuple[str, str, int], float] = {}
    for r in rows:
        key = (r["algorithm"], r["problem"], r["study"])
        t = r["time_to_target_s"] if r["time_to_target_s"] is not None else math.inf
        fastest[key] = min(fastest.get(key, math.inf), t)
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (algorithm, problem, _), t in sorted(fastest.items()):
        per[algorithm][problem].append(t)
    return {a: dict(ps) for a, ps in per.items()}


def problem_times(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """times[algorithm][problem] = median over studies of the fastest run of each study."""
    return {a: {p: statistics.median(ts) for p, ts in ps.items()} for a, ps in study_minima(rows).items()}


def ratio_interval(mine: list[float], best: list[float]) -> list[float] | None:
    """95% bootstrap interval of (mean of my studies' times) / (the fastest algorithm's), over
    the studies that reached the target; None with fewer than two such studies on a side."""
    from trainwell.bench.scoring import ratio_ci

    a, b = [t for t in mine if math.isfinite(t)], [t for t in best if math.isfinite(t)]
    if len(a) < 2 or len(b) < 2:
        return None
    return list(ratio_ci(a, b))


def missed_reasons(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """Why runs missed the target, counted per algorithm and problem: diverged (infeasible),
    plateaued, too slow, failed."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for r in rows:
        if r["reached"]:
            continue
        why = "diverged" if r["state"] == "infeasible" else (r.get("missed") or r["state"]).split(":")[0]
        out[r["algorithm"]][r["problem"]][why] += 1
    return {a: {p: dict(c) for p, c in ps.items()} for a, ps in out.items()}
