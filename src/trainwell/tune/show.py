"""``trainwell tune show``: a study as a terminal page (``render_text``) or as JSON
(``to_json``), both from a ``StudyView`` and its ``Analysis``; nothing here reads Optuna."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainwell.tune.analysis import Analysis
from trainwell.tune.checks import fmt
from trainwell.tune.records import StudyView, TrialRecord

STATE_ORDER = {"complete": 0, "pruned": 1, "running": 2, "infeasible": 3, "failed": 4}
"""Trials below the complete ones, in this order (then by number)."""
MAX_REASON = 60
"""Characters of a reason shown in the terminal table (``--json`` has it whole)."""


def ordered(view: StudyView, trials: list[TrialRecord] | None = None) -> list[TrialRecord]:
    """``trials`` (default: the search trials) best first: complete ones by objective, then
    pruned, running, infeasible and failed ones by number."""
    pool = view.search if trials is None else trials
    rank = {id(t): i for i, t in enumerate(view.ranked())}
    return sorted(pool, key=lambda t: (rank.get(id(t), len(rank)), STATE_ORDER.get(t.state, 9), t.number))


def _value(v: Any) -> str:
    if v is None:
        return "-"
    return fmt(float(v)) if isinstance(v, float) else fmt(v)


def _interventions(t: TrialRecord) -> str:
    return " ".join(f"{k}={v}" for k, v in t.interventions.items() if v) or "-"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def trials_table(view: StudyView, trials: list[TrialRecord]) -> list[str]:
    keys = [d.key for d in view.dims]
    rows = [["#", "state", view.metric, *keys, "interventions", "reason"]]
    for t in trials:
        reason = t.reason or ""
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
        rows.append([str(t.number), t.state, _value(t.value), *(_value(t.params.get(k)) for k in keys),
                     _interventions(t), reason])
    return _table(rows)


def render_text(view: StudyView, analysis: Analysis) -> str:
    """The study for a terminal: trials best first, then the warnings, importances,
    isolation and seed groups."""
    c = analysis.counts
    direction = "higher" if view.higher_is_better else "lower"
    done = ", ".join(f"{c[s]} {s}" for s in STATE_ORDER if c.get(s))
    lines = [f"study {view.name}: {view.metric} ({view.objective}, {direction} is better), "
             f"sampler {view.sampler}", f"trials: {done or 'none yet'} of {view.planned} planned"
             + (f"; {c['reruns']} seed reruns" if c.get("reruns") else ""), ""]
    lines += trials_table(view, ordered(view)) if view.search else ["(no trials yet)"]
    sections = [("warnings", [f"- {w}" for w in analysis.warnings] or ["none"]),
                ("importances", _importance_lines(analysis)),
                ("isolation (best trial per value of each scientific key)", _isolation_lines(view, analysis)),
                ("seed reruns", _seed_lines(analysis))]
    for title, body in sections:
        if body:
            lines += ["", f"{title}:", *body]
    return "\n".join(lines) + "\n"


def _importance_lines(analysis: Analysis) -> list[str]:
    if not analysis.importances:
        return [f"  ({analysis.importance_note})"] if analysis.importance_note else []
    width = max(len(k) for k in analysis.importances)
    return [f"  {k.ljust(width)}  {v:5.2f}  {'#' * round(v * 30)}" for k, v in analysis.importances.items()]


def _isolation_lines(view: StudyView, analysis: Analysis) -> list[str]:
    out = []
    for iso in analysis.isolation:
        out.append(f"  {iso.key}" + (" (bucketed)" if iso.bucketed else ""))
        rows = [["value", view.metric, "trial", "complete"]]
        for r in iso.rows:
            rows.append([r.label, _value(r.objective), str(r.best.number) if r.best else "-",
                         f"{r.n_complete} of {r.n}"])
        out += [f"    {line}" for line in _table(rows)]
    return out


def _seed_lines(analysis: Analysis) -> list[str]:
    if not analysis.seed_groups:
        return []
    rows = [["trial", "seeds", "mean", "std", "min", "max"]]
    for g in analysis.seed_groups:
        rows.append([str(g.origin), f"{g.n} of {g.n_runs}", fmt(g.mean), fmt(g.std),
                     fmt(min(g.values)), fmt(max(g.values))])
    return [f"  {line}" for line in _table(rows)] + [f"  - {t.sentence}" for t in analysis.ties]


# --- JSON -----------------------------------------------------------------------------------

def clean(obj: Any) -> Any:
    """``obj`` made JSON-safe: non-finite floats become None, tuples lists, other objects text."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _trial(t: TrialRecord | None) -> dict[str, Any] | None:
    return None if t is None else clean(t.to_json())


def to_json(view: StudyView, analysis: Analysis) -> dict[str, Any]:
    """``{"trials": [...], "best": {...} | null, "warnings": [...]}`` and the rest of the
    analysis; safe for ``json.dumps(..., allow_nan=False)``."""
    trials = ordered(view) + sorted(view.reruns, key=lambda t: (t.rerun_of, t.number))
    return clean({
        "trials": [_trial(t) for t in trials],
        "best": _trial(analysis.best),
        "warnings": list(analysis.warnings),
        "top": [t.number for t in analysis.top],
        "study": {
            "name": view.name, "study_dir": view.study_dir, "metric": view.metric,
            "higher_is_better": view.higher_is_better, "objective": view.objective,
            "sampler": view.sampler, "planned": view.planned, "scientific": view.scientific,
            "dims": [{"key": d.key, "kind": d.kind, "low": d.low, "high": d.high, "choices": d.choices}
                     for d in view.dims],
        },
        "counts": analysis.counts,
        "importances": analysis.importances,
        "importance_note": analysis.importance_note,
        "isolation": [{"key": i.key, "bucketed": i.bucketed, "rows": [
            {"label": r.label, "value": r.value, "best": r.best.number if r.best else None,
             "objective": r.objective, "n": r.n, "n_complete": r.n_complete} for r in i.rows]}
            for i in analysis.isolation],
        "seed_groups": [{"origin": g.origin, "n": g.n, "n_runs": g.n_runs, "mean": g.mean, "std": g.std,
                         "min": min(g.values), "max": max(g.values), "values": g.values}
                        for g in analysis.seed_groups],
        "ties": [{"best": t.best, "other": t.other, "verdict": t.verdict, "diff": t.diff,
                  "spread": t.spread, "sentence": t.sentence} for t in analysis.ties],
    })
