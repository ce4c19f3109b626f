"""The Tuning Playbook's checks on a study, as plain-English warnings ("Checks after each
study", "Number of steps"): the best trials near a search-space boundary, a high share of
infeasible trials (and where they concentrate), failed trials, trials the autopilot rescued,
the best checkpoint too early or too late, too few complete trials to judge."""

from __future__ import annotations

import math
import re
from collections import Counter

from trainwell.tune.records import Dimension, StudyView, TrialRecord

EDGE = 0.10
"""A trial within this fraction of the range (in the space's own scale) sits at its edge."""
BOUNDARY_TOP = 3
"""The boundary check looks at the top 3 trials, or the top 20% when that is more."""
BOUNDARY_SHARE = 0.20
INFEASIBLE_SHARE = 0.25
"""Warn when at least this share of finished trials is infeasible (the Playbook: 'high')."""
EARLY, LATE = 0.10, 0.75
"""Best evaluation in the first 10% of training: too many steps; in the last 25%: still
improving (the Playbook's retrospective best-checkpoint check)."""
MIN_COMPLETE = 3
"""Fewer complete trials than this: no boundary check, no importances."""


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def fmt(v: object) -> str:
    """A value the way a practitioner reads it: 4 significant digits."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def rescued_warning(ranked: list[TrialRecord]) -> list[str]:
    """Complete trials the autopilot rolled back: it lowered their learning rate, so their
    value is not quite that of the point they sampled (the edge of stability is near)."""
    rescued = [t for t in ranked if t.interventions.get("rollbacks")]
    if not rescued:
        return []
    names = ", ".join(str(t.number) for t in rescued[:8]) + (", ..." if len(rescued) > 8 else "")
    return [f"{plural(len(rescued), 'complete trial')} ({names}) finished only after the autopilot rolled "
            "back and lowered the learning rate: their values belong to a lower rate than sampled, and "
            "their points sit near the edge of stability"]


def too_few_warning(view: StudyView, ranked: list[TrialRecord]) -> list[str]:
    if len(ranked) >= MIN_COMPLETE:
        return []
    return [f"only {len(ranked)} of {view.planned} planned trials are complete: too few to judge "
            f"boundaries, importances or the best step; run the study further (at least "
            f"{MIN_COMPLETE} complete trials, ideally 10 or more)"]


# --- search-space boundaries ----------------------------------------------------------------

def _axis_name(dim: Dimension) -> str:
    return f"1 - {dim.key}" if dim.kind == "one_minus_log" else dim.key


def boundary_warnings(view: StudyView, ranked: list[TrialRecord]) -> list[str]:
    """The Playbook's first check: the best points near an edge mean the space is too small.
    It takes at least half of the top trials at one edge: one good trial there is what an
    even coverage gives by chance (a 24-trial digits study had 1 of its top 5 at an edge of
    two ranges each, with a dozen trials tied on accuracy)."""
    if len(ranked) < MIN_COMPLETE:
        return []
    n_top = min(len(ranked), max(BOUNDARY_TOP, math.ceil(BOUNDARY_SHARE * len(ranked))))
    top = ranked[:n_top]
    out = []
    for dim in view.dims:
        pos = [dim.position(t.params[dim.key]) for t in top if dim.key in t.params]
        pos = [p for p in pos if p is not None]
        for edge, near, bound, way in (("lower", [p for p in pos if p <= EDGE], dim.low, "downward"),
                                       ("upper", [p for p in pos if p >= 1 - EDGE], dim.high, "upward")):
            if len(near) * 2 >= n_top:
                out.append(f"the best trials sit at the {edge} edge of {_axis_name(dim)} "
                           f"({len(near)} of the top {n_top} within {EDGE:.0%} of {fmt(bound)}): "
                           f"widen the range {way}")
    return out


# --- infeasible and failed trials -----------------------------------------------------------

def reason_kind(reason: str | None) -> str:
    """A reason's kind, from its first words: 'divergence at step 120: loss 3e4' -> 'divergence'."""
    if not reason:
        return "no reason recorded"
    head = re.split(r"[:;,(\[]| at | after | - ", reason.strip(), maxsplit=1)[0]
    words = [w for w in head.split() if not re.fullmatch(r"[-+.\deE]+", w)]
    return " ".join(words[:4]) or "no reason recorded"


def _reason_counts(trials: list[TrialRecord]) -> str:
    kinds = Counter(reason_kind(t.reason) for t in trials)
    return ", ".join(f"{k}: {n}" for k, n in kinds.most_common())


def infeasible_warnings(view: StudyView) -> list[str]:
    finished = [t for t in view.search if t.state != "running"]
    bad = [t for t in finished if t.state == "infeasible"]
    failed = [t for t in finished if t.state == "failed"]
    out = []
    if finished and bad and len(bad) / len(finished) >= INFEASIBLE_SHARE:
        where = concentration(view, bad)
        advice = (f"{where}: narrow that range or make it stable (warm-up, clipping)" if where else
                  "they do not concentrate in one part of any range: re-parameterise the space "
                  "or look for a bug")
        out.append(f"{len(bad)} of {len(finished)} finished trials "
                   f"({len(bad) / len(finished):.0%}) were infeasible ({_reason_counts(bad)}): {advice}")
    if failed:
        nums = ", ".join(str(t.number) for t in failed[:8]) + (", ..." if len(failed) > 8 else "")
        out.append(f"{plural(len(failed), 'trial')} failed ({_reason_counts(failed)}; trials {nums}): a "
                   "failure is an error, not a property of the point: read the trial's error, fix "
                   "it and run the study again so those points are measured")
    return out


def concentration(view: StudyView, bad: list[TrialRecord]) -> str | None:
    """Where the infeasible trials concentrate, as a sentence ('all 6 infeasible trials had
    optim.lr at or above 0.03 (1 of 7 complete trials there)'), or None when no one range of
    one dimension holds at least 3/4 of them with mostly infeasible trials there."""
    good = [t for t in view.search if t.state == "complete"]
    best: tuple[float, str] | None = None
    for dim in view.dims:
        for score, text in _splits(dim, bad, good):
            if best is None or score > best[0]:
                best = (score, text)
    return best[1] if best is not None else None


def _splits(dim: Dimension, bad: list[TrialRecord], good: list[TrialRecord]) -> list[tuple[float, str]]:
    """Candidate (score, sentence) splits of ``dim`` that hold most infeasible trials."""
    key = dim.key
    bv = [t.params[key] for t in bad if key in t.params]
    gv = [t.params[key] for t in good if key in t.params]
    if not bv:
        return []
    if dim.kind == "choice":
        tests = [("=", v, lambda x, v=v: x == v) for v in {repr(v): v for v in bv}.values()]
    else:
        tests = [(op, v, test) for v in bv for op, test in (
            (">=", lambda x, v=v: dim.axis_value(x) >= dim.axis_value(v)),
            ("<=", lambda x, v=v: dim.axis_value(x) <= dim.axis_value(v)))]
    out = []
    for op, v, test in tests:
        kb, kg = sum(map(test, bv)), sum(map(test, gv))
        purity = kb / (kb + kg)
        if kb / len(bad) >= 0.75 and purity >= 0.6:
            who = f"all {kb}" if kb == len(bad) else f"{kb} of {len(bad)}"
            words = {"=": "=", ">=": "at or above", "<=": "at or below"}[op]
            shown = repr(v) if isinstance(v, str) else fmt(dim.axis_value(v))
            out.append((kb / len(bad) * purity,
                        f"{who} infeasible trials had {_axis_name(dim)} {words} {shown} "
                        f"({kg} of {len(gv)} complete trials there)"))
    return out


# --- best step ------------------------------------------------------------------------------

def best_step_warnings(top: list[TrialRecord]) -> list[str]:
    """Retrospective best-checkpoint check over the top trials, one warning per finding."""
    early, late = [], []
    for t in top:
        if t.best_step is None or not t.steps:
            continue
        frac = t.best_step / t.steps
        if frac <= EARLY:
            early.append(t)
        elif frac >= LATE:
            late.append(t)
    out = []
    for group, where, advice in (
            (early, f"in the first {EARLY:.0%}", "too many steps: the run could be shorter, or the LR too high"),
            (late, f"in the last {1 - LATE:.0%}", "still improving at the end: train longer or re-tune the decay")):
        if group:
            e = group[0]
            out.append(f"the best evaluation came {where} of training for {len(group)} of the top "
                       f"{len(top)} trials (trial {e.number}: step {e.best_step} of {e.steps}): {advice}")
    return out
