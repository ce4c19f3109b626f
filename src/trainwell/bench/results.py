"""A benchmark's results: one JSON per run and a table per protocol in ``results/``, read
from the studies' trials; the verdicts are noise-aware (bootstrap intervals over seeds,
overlapping intervals are a tie).

Which split each number is on: a run's ``value`` is its final validation metric (what the
study selected by; ``value_split``), its ``test_value`` the same metric on the test split
(``test_metric``), evaluated for final runs only, after selection (``heldout.py``). The
table reports (``split``, ``reported_metric``) the test metric of the setting chosen on
validation for deepobs and budget, as DeepOBS and Crowded Valley do, and validation for
oneshot (no setting is chosen) and algoperf (its targets are validation targets). Choices
made here (budget: an algorithm's schedule) are made on validation (``val_mean``) too."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from trainwell.bench.config import BenchConfig, StudyPlan
from trainwell.bench.scoring import bootstrap_ci, verdict

RESULTS = "results"


def collect(root: Path, cfg: BenchConfig, plans: list[StudyPlan]) -> list[dict[str, Any]]:
    """Every run of every study as a row: the final runs (``role`` final: the seeds of the
    defaults, or of the selected setting) and the search that selected them (``search``)."""
    from trainwell.tune import load_handle
    from trainwell.tune.study import read_view

    rows = []
    for p in plans:
        d = root / "studies" / p.path
        if not (d / "study.toml").is_file():
            continue
        view = read_view(load_handle(d))
        final = final_numbers(view, cfg.protocol)
        tested = final if cfg.protocol != "algoperf" else set()  # algoperf stays on validation
        for t in view.trials:
            rows.append(_timed(p, t, {
                "problem": p.problem.name, "algorithm": p.algorithm, "protocol": cfg.protocol,
                "schedule": p.schedule, "seed": int(t.params.get("seed", t.seed)), "metric": view.metric,
                "higher_is_better": view.higher_is_better, "value": _finite(t.value),
                "value_split": "validation", **_test_fields(t, view.metric, t.number in tested), "state": t.state,
                "reason": t.reason, "interventions": t.interventions,
                "interventions_total": t.interventions_total, "params": t.params,
                "run_dir": t.run_dir, "role": "final" if t.number in final else "search",
                "trial": t.number, "rerun_of": t.rerun_of, "time_to_target_s": None, "reached": None,
                "duration_s": t.duration_s, "study": p.study_index,
            }, cfg.protocol))
    return rows


def _timed(p: StudyPlan, t: Any, row: dict[str, Any], protocol: str) -> dict[str, Any]:
    """algoperf: the run's training time to the problem's target (None: not reached)."""
    if protocol != "algoperf":
        return row
    from trainwell.bench.algoperf import time_to_target

    seconds, missed = math.inf, t.reason or t.state
    if t.run_dir and t.state == "complete":
        seconds, missed = time_to_target(t.run_dir, row["metric"], p.problem.target, row["higher_is_better"],
                                         p.problem.max_runtime_s)
    row["reached"] = math.isfinite(seconds)
    row["time_to_target_s"] = seconds if math.isfinite(seconds) else None
    row["missed"] = missed
    row["target"] = p.problem.target
    return row


def _test_fields(t: Any, metric: str, final: bool) -> dict[str, Any]:
    """test_metric, test_value (None: not evaluated) and why a final run has no test value."""
    from trainwell.bench.heldout import read_test

    name = "test/" + metric.split("/", 1)[-1]
    record = read_test(t.run_dir) if final and t.run_dir else None
    value = record["metrics"].get(name) if record else None
    missing = None
    if final and t.state == "complete" and value is None:
        missing = record["missing"] if record and record.get("missing") else "not evaluated"
    return {"test_metric": name, "test_value": value, "test_missing": missing}


def final_numbers(view: Any, protocol: str) -> set[int]:
    """The trial numbers of a study's final runs: every run for oneshot, else the best by
    the study's ranking (its validation objective; the test split is never read) and its
    seed reruns."""
    if protocol == "oneshot":
        return {t.number for t in view.trials}
    ranked = view.ranked()
    if not ranked:
        return set()
    best = ranked[0].number
    return {best} | {t.number for t in view.reruns if t.rerun_of == best}


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


# ---------------------------------------------------------------- tables and verdicts


REPORTED_SPLIT = {"oneshot": "validation", "deepobs": "test", "budget": "test", "algoperf": "validation"}
"""The split each protocol's table reports: deepobs and budget choose a setting on
validation and report it on test; oneshot chooses nothing; algoperf's targets are
validation targets."""


def reported_values(final: list[dict[str, Any]], split: str) -> list[float]:
    """The final runs' values on the reported split (complete runs that have one)."""
    key = "test_value" if split == "test" else "value"
    return [r[key] for r in final if r["state"] == "complete" and r[key] is not None]


def table(rows: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    """One line per problem and algorithm (and schedule for budget): the final runs' mean,
    spread and 95% bootstrap interval on the reported split (``REPORTED_SPLIT``), their
    validation mean (what choices between lines are made on), infeasible counts,
    interventions, and for the lr grid the fraction of it that trained stably."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["problem"], r["algorithm"], r["schedule"])].append(r)
    split = REPORTED_SPLIT[protocol]
    out = []
    for (problem, algorithm, schedule), rs in groups.items():
        final = [r for r in rs if r["role"] == "final"]
        values, val_values = reported_values(final, split), reported_values(final, "validation")
        line = {
            "problem": problem, "algorithm": algorithm, "schedule": schedule, "metric": rs[0]["metric"],
            "split": split, "reported_metric": rs[0]["test_metric"] if split == "test" else rs[0]["metric"],
            "higher_is_better": rs[0]["higher_is_better"], "n": len(values), "runs": len(final),
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "ci": list(bootstrap_ci(values)) if len(values) > 1 else None,
            "val_mean": statistics.fmean(val_values) if val_values else None,
            "infeasible": sum(r["state"] == "infeasible" for r in rs),
            "interventions": sum(r["interventions_total"] for r in rs),
            "values": values,
        }
        if protocol == "deepobs":
            grid = [r for r in rs if r["rerun_of"] is None]  # the learning-rate grid itself
            stable = [r for r in grid if r["state"] == "complete" and not r["interventions"].get("rollbacks")
                      and not r["interventions"].get("skips")]
            line["stable_lr_fraction"] = len(stable) / len(grid) if grid else None
            chosen = [r for r in final if r["rerun_of"] is None]
            line["lr"] = chosen[0]["params"].get("optim.lr") if chosen else None
        out.append(line)
    return out


def verdicts(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Per problem, the best algorithm by mean and each other's verdict against it: 'tie'
    when the 95% bootstrap intervals overlap (so also with fewer than 2 seeds, which cannot
    show a difference), else 'worse'. Per algorithm, how many problems it won or tied."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_problem[line["problem"]].append(_best_schedule(line, lines))
    problems: dict[str, Any] = {}
    wins: dict[str, int] = defaultdict(int)
    for problem, ls in by_problem.items():
        ls = list({(x["algorithm"]): x for x in ls}.values())
        scored = [x for x in ls if x["mean"] is not None]
        if not scored:
            continue
        higher = scored[0]["higher_is_better"]
        best = max(scored, key=lambda x: x["mean"] if higher else -x["mean"])
        entry = {}
        for x in ls:
            v = _verdict(x, best, higher)
            entry[x["algorithm"]] = {"verdict": v, "mean": x["mean"], "schedule": x["schedule"]}
            if v in ("best", "tie"):
                wins[x["algorithm"]] += 1
        problems[problem] = {"best": best["algorithm"], "algorithms": entry}
    return {"problems": problems, "wins": dict(wins)}


def _verdict(x: dict[str, Any], best: dict[str, Any], higher: bool) -> str:
    if x is best:
        return "best"
    if x["mean"] is None:
        return "no result"
    if len(x["values"]) < 2 or len(best["values"]) < 2:
        return "tie" if x["mean"] == best["mean"] else "worse (one seed)"
    v = verdict(x["values"], best["values"], higher)
    return "tie" if v == "tie" else "worse"


def _best_schedule(line: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """budget: an algorithm is judged with its schedule that is best on validation (the
    mean validation value of its final runs): choosing it by the reported test values would
    select on the split that is reported."""
    mine = [x for x in lines if x["problem"] == line["problem"] and x["algorithm"] == line["algorithm"]
            and x.get("val_mean", x["mean"]) is not None]
    if not mine:
        return line
    higher = line["higher_is_better"]
    return max(mine, key=lambda x: x.get("val_mean", x["mean"]) * (1 if higher else -1))


def algoperf_table(rows: list[dict[str, Any]], reference: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One line per problem and algorithm (its time: the median over studies of each study's
    fastest run), and the scores: performance-profile score (r_max = 4), the speed-up over
    ``reference``, why runs missed."""
    from trainwell.bench.algoperf import missed_reasons, problem_times, ratio_interval, study_minima
    from trainwell.bench.scoring import benchmark_scores, speedup_over

    times, minima = problem_times(rows), study_minima(rows)
    missed = missed_reasons(rows)
    lines = []
    for algorithm, per in times.items():
        for problem, t in per.items():
            mine = [r for r in rows if r["algorithm"] == algorithm and r["problem"] == problem]
            fastest = min(times, key=lambda a: times[a].get(problem, math.inf))
            lines.append({"problem": problem, "algorithm": algorithm, "time_to_target_s": _finite(t),
                          "runs": len(mine), "reached": sum(bool(r["reached"]) for r in mine),
                          "missed": missed.get(algorithm, {}).get(problem, {}),
                          "target": mine[0]["target"], "metric": mine[0]["metric"],
                          "study_times_s": [_finite(x) for x in minima[algorithm][problem]],
                          "ratio_to_fastest_ci": ratio_interval(minima[algorithm][problem],
                                                                minima[fastest][problem])})
    scores = {"score": benchmark_scores(times), "r_max": 4.0, "reference": reference,
              "speedup": {a: _finite(v) for a, v in speedup_over(times, reference).items()}
              if reference in times else {},
              "times": {a: {p: _finite(t) for p, t in ps.items()} for a, ps in times.items()}}
    return lines, scores


def write_results(root: Path, cfg: BenchConfig, rows: list[dict[str, Any]]) -> None:
    """results/runs/<problem>/<algorithm>/<schedule>/study<k>/trial-N.json, results/table.json."""
    res = root / RESULTS
    shutil.rmtree(res / "runs", ignore_errors=True)  # regenerated whole from the studies
    for r in rows:
        path = (res / "runs" / r["problem"] / r["algorithm"].replace(":", "-") / r["schedule"]
                / f"study{r['study']}" / f"trial-{r['trial']}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r, indent=1, allow_nan=False))
    if cfg.protocol == "algoperf":
        lines, score = algoperf_table(rows, cfg.reference)
        scores = {"algoperf": score}
    else:
        lines = table(rows, cfg.protocol)
        scores = {cfg.protocol: verdicts(lines)}
    (res / "table.json").write_text(json.dumps({"protocol": cfg.protocol, "lines": lines, "scores": scores},
                                               indent=1, allow_nan=False))


def read_results(root: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The runs and the table of a benchmark folder (what show and report read)."""
    from trainwell.errors import ConfigError

    res = root / RESULTS
    if not (res / "table.json").is_file():
        raise ConfigError(f"{root}: no benchmark results ({RESULTS}/table.json); run trainwell bench --out {root}")
    runs = [json.loads(p.read_text()) for p in sorted(res.glob("runs/**/trial-*.json"))]
    return runs, json.loads((res / "table.json").read_text())
