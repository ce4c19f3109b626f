"""What a finished (or running) study says, from its plain records only (``records.py``):
the best trials, the Tuning Playbook's checks as plain-English warnings (``checks.py``), the
data of the hyperparameter-axis and isolation plots, parameter importances and the
seed-rerun verdicts (trial variance measured by seed reruns, the Playbook's last check).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from trainwell.tune.checks import (
    MIN_COMPLETE,
    best_step_warnings,
    boundary_warnings,
    fmt,
    infeasible_warnings,
    rescued_warning,
    too_few_warning,
)
from trainwell.tune.records import STATES, Dimension, StudyView, TrialRecord

TOP_K = 5
"""Trials in the top list (and in the best-step check, and with curves in the report)."""
BINS = 5
"""Buckets of a continuous scientific key in the isolation plot."""


@dataclass
class AxisPoint:
    """One trial on a hyperparameter axis. ``objective`` is None for a trial without a value
    (infeasible, failed, pruned early): the plot puts it in a band, marked, with its reason."""

    value: Any
    objective: float | None
    state: str
    reason: str | None
    number: int


@dataclass
class Axis:
    dim: Dimension
    points: list[AxisPoint]


@dataclass
class IsolationRow:
    """The trials at one value (or bucket) of a scientific key; ``best`` optimises the nuisance
    parameters away."""

    label: str
    value: Any
    """The value, or the (low, high) bounds of a bucket in config terms."""
    best: TrialRecord | None
    n: int
    n_complete: int

    @property
    def objective(self) -> float | None:
        return self.best.value if self.best is not None else None


@dataclass
class Isolation:
    key: str
    rows: list[IsolationRow]
    bucketed: bool = False


@dataclass
class SeedGroup:
    """A trial and its seed reruns (the original counts as one seed)."""

    origin: int
    values: list[float]
    n_runs: int
    """Runs in the group, with those that gave no value."""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0


@dataclass
class Tie:
    """``other`` compared with ``best`` (the group of the study's best trial)."""

    best: int
    other: int
    verdict: Literal["tie", "better", "worse", "unclear"]
    diff: float
    spread: float
    sentence: str


@dataclass
class Analysis:
    best: TrialRecord | None
    top: list[TrialRecord]
    warnings: list[str]
    axes: list[Axis]
    isolation: list[Isolation]
    importances: dict[str, float]
    importance_note: str | None
    seed_groups: list[SeedGroup]
    ties: list[Tie]
    counts: dict[str, int] = field(default_factory=dict)


def analyse(view: StudyView) -> Analysis:
    """Everything ``tune show`` and the study report present, computed once."""
    ranked = view.ranked()
    importances, note = importances_of(view)
    groups = seed_groups(view)
    found = [*too_few_warning(view, ranked), *boundary_warnings(view, ranked), *infeasible_warnings(view),
             *rescued_warning(ranked)]
    if view.objective == "best":  # with the final value, best_step is only the last evaluation
        found += best_step_warnings(ranked[:TOP_K])
    return Analysis(
        best=ranked[0] if ranked else None, top=ranked[:TOP_K], warnings=found,
        axes=[Axis(d, axis_points(view, d)) for d in view.dims],
        isolation=[isolation_of(view, key) for key in view.scientific],
        importances=importances, importance_note=note,
        seed_groups=groups, ties=compare_groups(view, groups), counts=counts_of(view),
    )


def counts_of(view: StudyView) -> dict[str, int]:
    tally = Counter(t.state for t in view.search)
    out = {s: tally.get(s, 0) for s in STATES}
    out["planned"] = view.planned
    out["reruns"] = len(view.reruns)
    return out


# --- plots' data ----------------------------------------------------------------------------

def axis_points(view: StudyView, dim: Dimension) -> list[AxisPoint]:
    """Every finished search trial on ``dim``'s axis: infeasible and failed ones included."""
    out = []
    for t in view.search:
        if t.state == "running" or dim.key not in t.params:
            continue
        value = t.params[dim.key] if dim.kind == "choice" else dim.axis_value(t.params[dim.key])
        obj = t.value if t.value is not None and math.isfinite(t.value) else None
        out.append(AxisPoint(value, obj, t.state, t.reason, t.number))
    return out


def isolation_of(view: StudyView, key: str) -> Isolation:
    """The best complete trial per value (or per bucket, for a continuous range) of a
    scientific key: the other parameters are optimised away (the Playbook's isolation plot)."""
    dim = next((d for d in view.dims if d.key == key), None)
    trials = [t for t in view.search if t.state != "running"]
    distinct = {repr(t.params.get(key)) for t in trials}
    bucketed = dim is not None and dim.kind != "choice" and (dim.kind != "int" or len(distinct) > BINS)
    groups: dict[Any, list[TrialRecord]] = {}
    for t in trials:
        v = t.params.get(key)
        k = _bucket(dim, v) if bucketed else (tuple(v) if isinstance(v, list) else v)
        groups.setdefault(k, []).append(t)
    order = {id(t): i for i, t in enumerate(view.ranked())}
    rows = []
    for k in sorted(groups, key=_sort_key):
        done = sorted((t for t in groups[k] if id(t) in order), key=lambda t: order[id(t)])
        value: Any = _bucket_bounds(dim, k) if bucketed and dim is not None and k is not None else k
        if k is None:
            label = "(not set)"
        elif isinstance(value, tuple) and bucketed:
            label = f"{fmt(value[0])} .. {fmt(value[1])}"
        else:
            label = fmt(value)
        rows.append(IsolationRow(label, value, done[0] if done else None, len(groups[k]), len(done)))
    return Isolation(key, rows, bucketed)


def _sort_key(k: Any) -> tuple[bool, bool, Any]:
    number = isinstance(k, int | float) and not isinstance(k, bool)
    return (k is None, not number, k if number else str(k))


def _bucket(dim: Dimension | None, v: Any) -> int | None:
    pos = dim.position(v) if dim is not None and v is not None else None
    return None if pos is None else min(BINS - 1, max(0, int(pos * BINS)))


def _bucket_bounds(dim: Dimension, i: int) -> tuple[float, float]:
    """Bucket ``i``'s bounds on the searched axis (for one_minus_log: of 1 - value)."""
    lo, hi = float(dim.low), float(dim.high)  # type: ignore[arg-type]
    if dim.log_axis:
        a, b = (lo * (hi / lo) ** (j / BINS) for j in (i, i + 1))
    else:
        a, b = (lo + (hi - lo) * j / BINS for j in (i, i + 1))
    return a, b


# --- importances ----------------------------------------------------------------------------

def importances_of(view: StudyView) -> tuple[dict[str, float], str | None]:
    """Optuna's PED-ANOVA importances (deterministic: it draws no random numbers) over the
    complete search trials, or ({}, why not)."""
    done = [t for t in view.ranked() if all(d.key in t.params for d in view.dims)]
    if len(done) < MIN_COMPLETE or not view.dims:
        return {}, f"importances need at least {MIN_COMPLETE} complete trials ({len(done)} so far)"
    try:
        import optuna
        from optuna.importance import PedAnovaImportanceEvaluator

        dists = {d.key: _distribution(d, done) for d in view.dims}
        trials = [optuna.trial.create_trial(
            params={d.key: _param(d, t.params[d.key]) for d in view.dims},
            distributions=dists, value=t.value) for t in done]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize" if view.higher_is_better else "minimize")
        study.add_trials(trials)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except Exception as e:  # importances are a nicety; the rest of the analysis stands
        return {}, f"importances could not be computed ({type(e).__name__}: {e})"
    note = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or None  # e.g. too few trials to tell
    return {k: float(v) for k, v in result.items() if math.isfinite(v)}, note


def _param(dim: Dimension, value: Any) -> Any:
    if dim.kind == "choice":
        return value if value is None or isinstance(value, bool | int | float | str) else repr(value)
    return dim.axis_value(value)


def _distribution(dim: Dimension, done: list[TrialRecord]) -> Any:
    """Optuna's distribution for ``dim``, widened to hold every recorded value (a range edited
    after some trials ran must not make them unreadable)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    seen = [_param(dim, t.params[dim.key]) for t in done]
    if dim.kind == "choice":
        return CategoricalDistribution(tuple(dict.fromkeys([_param(dim, c) for c in dim.choices] + seen)))
    lo = min([float(v) for v in seen] + ([float(dim.low)] if dim.low is not None else []))
    hi = max([float(v) for v in seen] + ([float(dim.high)] if dim.high is not None else []))
    if dim.kind == "int":
        return IntDistribution(math.floor(lo), math.ceil(hi))
    return FloatDistribution(lo, hi, log=dim.log_axis)


# --- seed reruns ----------------------------------------------------------------------------

def seed_groups(view: StudyView) -> list[SeedGroup]:
    by_number = {t.number: t for t in view.search}
    groups: dict[int, list[TrialRecord]] = {}
    for r in view.reruns:
        groups.setdefault(r.rerun_of, []).append(r)  # type: ignore[arg-type]
    out = []
    for origin, reruns in sorted(groups.items()):
        runs = ([by_number[origin]] if origin in by_number else []) + reruns
        values = [t.value for t in runs
                  if t.state == "complete" and t.value is not None and math.isfinite(t.value)]
        if values:
            out.append(SeedGroup(origin, values, len(runs)))
    return out


def compare_groups(view: StudyView, groups: list[SeedGroup]) -> list[Tie]:
    """Each group against the group of the study's best trial (or the best mean): a tie when
    the means differ by no more than the larger seed standard deviation."""
    if len(groups) < 2:
        return []
    ranked = view.ranked()
    ref = next((g for g in groups if ranked and g.origin == ranked[0].number), None)
    if ref is None:
        ref = max(groups, key=lambda g: g.mean if view.higher_is_better else -g.mean)
    return [_compare(view, ref, g) for g in groups if g is not ref]


def _describe(g: SeedGroup) -> str:
    return f"trial {g.origin} ({fmt(g.mean)} ± {fmt(g.std)} over {g.n} seed{'s' if g.n != 1 else ''})"


def _compare(view: StudyView, ref: SeedGroup, g: SeedGroup) -> Tie:
    diff, spread = abs(g.mean - ref.mean), max(ref.std, g.std)
    if min(ref.n, g.n) < 2:
        return Tie(ref.origin, g.origin, "unclear", diff, spread,
                   f"{_describe(g)} vs {_describe(ref)}: unclear, one of them has a single seed; "
                   "rerun it with more seeds to measure the noise")
    if diff <= spread:
        return Tie(ref.origin, g.origin, "tie", diff, spread,
                   f"{_describe(g)} ties with {_describe(ref)}: the difference {fmt(diff)} is "
                   f"within the seed noise ({fmt(spread)}); the study cannot tell them apart")
    verdict: Literal["better", "worse"] = "better" if view.better(g.mean, ref.mean) else "worse"
    return Tie(ref.origin, g.origin, verdict, diff, spread,
               f"{_describe(g)} is {verdict} than {_describe(ref)}: the difference {fmt(diff)} "
               f"exceeds the seed noise ({fmt(spread)})")
