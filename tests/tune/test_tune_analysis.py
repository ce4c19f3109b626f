"""The study analysis from plain records: the Playbook's checks, isolation, importances and
seed-rerun verdicts (no Optuna storage, no training)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from trainwell.tune.analysis import analyse
from trainwell.tune.checks import reason_kind
from trainwell.tune.records import Dimension, StudyView, TrialRecord

LR = Dimension("optim.lr", "log", 1e-4, 1e-1)
WD = Dimension("optim.weight_decay", "uniform", 0.0, 0.1)
ACT = Dimension("model.act", "choice", choices=("relu", "gelu"))


def view(trials: list[TrialRecord], dims: list[Dimension] | None = None, scientific: list[str] | None = None,
         higher: bool = True, planned: int | None = None) -> StudyView:
    return StudyView(name="s", study_dir=Path("/nonexistent/s"), metric="eval/accuracy", higher_is_better=higher,
                     objective="best", dims=dims or [LR, WD], scientific=scientific or [], trials=trials,
                     planned=planned or len([t for t in trials if t.rerun_of is None]))


def done(n: int, value: float, lr: float, wd: float = 0.05, **kw: object) -> TrialRecord:
    return TrialRecord(n, "complete", {"optim.lr": lr, "optim.weight_decay": wd}, value=value, **kw)  # type: ignore[arg-type]


def boundary(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "edge of" in w]


def test_boundary_warning_fires_at_the_upper_edge_in_log_scale() -> None:
    # 0.06 is at 60% of [1e-4, 0.1] linearly but at 93% in log scale: the edge of a log space
    trials = [done(0, 0.90, 0.06), done(1, 0.89, 0.07), done(2, 0.88, 0.08),
              done(3, 0.50, 1e-3), done(4, 0.40, 3e-4)]
    w = boundary(analyse(view(trials)).warnings)
    assert w == ["the best trials sit at the upper edge of optim.lr (3 of the top 3 within 10% of 0.1): "
                 "widen the range upward"]


def test_boundary_warning_silent_in_the_middle_of_a_log_range() -> None:
    # 1e-3 is 1% of the range linearly (an 'edge' on a linear scale) but a third of the way in log scale
    trials = [done(0, 0.90, 1e-3), done(1, 0.89, 3e-3), done(2, 0.88, 2e-3), done(3, 0.5, 0.09, wd=0.0)]
    assert boundary(analyse(view(trials)).warnings) == []


def test_boundary_warning_silent_when_one_good_trial_of_many_sits_at_an_edge() -> None:
    # even coverage puts some points at the edges: 1 of the top 5 there is no evidence
    lrs = [9.9e-2, 3e-3, 2e-3, 1e-3, 5e-3, 4e-4, 3e-4, 6e-4, 2e-4, 8e-3, 7e-3, 1.5e-3, 2.5e-3, 3.5e-3, 4.5e-3,
           5.5e-3, 6.5e-3, 7.5e-3, 8.5e-3, 9.5e-3, 1.2e-3, 1.7e-3, 2.2e-3, 2.7e-3]
    trials = [done(i, 0.99 - i / 100, lr) for i, lr in enumerate(lrs)]
    assert boundary(analyse(view(trials)).warnings) == []
    trials[1] = done(1, 0.98, 9.8e-2)
    trials[2] = done(2, 0.97, 9.7e-2)  # now 3 of the top 5: a real edge
    assert len(boundary(analyse(view(trials)).warnings)) == 1


def test_boundary_warning_lower_edge_and_one_minus_log() -> None:
    beta = Dimension("optim.betas[0]", "one_minus_log", 0.01, 0.5)  # 1 - beta1 in [0.01, 0.5]
    trials = [TrialRecord(i, "complete", {"optim.betas[0]": b}, value=v)
              for i, (b, v) in enumerate([(0.989, 0.9), (0.988, 0.8), (0.9, 0.7), (0.6, 0.6)])]
    w = boundary(analyse(view(trials, dims=[beta])).warnings)
    assert w == ["the best trials sit at the lower edge of 1 - optim.betas[0] (2 of the top 3 within 10% "
                 "of 0.01): widen the range downward"]


def test_infeasible_warning_counts_reasons_and_names_the_range() -> None:
    good = [done(i, 0.5 + i / 100, lr) for i, lr in enumerate([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])]
    bad = [TrialRecord(5 + i, "infeasible", {"optim.lr": lr, "optim.weight_decay": 0.05}, reason=r)
           for i, (lr, r) in enumerate([(0.04, "divergence: loss 3e4 > 10x its start"),
                                        (0.05, "divergence at step 12: loss rose"),
                                        (0.07, "divergence: loss 1e9"),
                                        (0.09, "non-finite loss at step 3")])]
    w = [x for x in analyse(view(good + bad)).warnings if "infeasible" in x]
    assert len(w) == 1
    assert w[0].startswith("4 of 9 finished trials (44%) were infeasible (divergence: 3, non-finite loss: 1)")
    assert "all 4 infeasible trials had optim.lr at or above 0.04 (0 of 5 complete trials there)" in w[0]
    assert "narrow that range" in w[0]


def test_infeasible_warning_quiet_below_a_quarter_and_failed_always_reported() -> None:
    good = [done(i, 0.5, 10 ** (-4 + i / 3)) for i in range(8)]
    one_bad = TrialRecord(8, "infeasible", {"optim.lr": 0.05}, reason="divergence: x")
    failed = TrialRecord(9, "failed", {"optim.lr": 1e-3}, reason="RuntimeError: CUDA out of memory")
    warnings = analyse(view([*good, one_bad, failed])).warnings
    assert not any("were infeasible" in w for w in warnings)  # 1 of 10 is below 25%
    fail = [w for w in warnings if "failed" in w]
    assert fail == ["1 trial failed (RuntimeError: 1; trials 9): a failure is an error, not a property of "
                    "the point: read the trial's error, fix it and run the study again so those points "
                    "are measured"]


def test_reason_kind_groups_by_first_words() -> None:
    assert reason_kind("divergence: loss 3e4") == "divergence"
    assert reason_kind("non-finite loss at step 40") == "non-finite loss"
    assert reason_kind("nonfinite: eval/accuracy = nan") == "nonfinite"
    assert reason_kind(None) == "no reason recorded"


def test_best_step_early_and_late_checks() -> None:
    trials = [done(0, 0.9, 1e-3, best_step=50, steps=1000), done(1, 0.8, 2e-3, best_step=980, steps=1000),
              done(2, 0.7, 3e-3, best_step=900, steps=1000), done(3, 0.6, 4e-3, best_step=500, steps=1000)]
    w = analyse(view(trials)).warnings
    early = [x for x in w if "first 10%" in x]
    late = [x for x in w if "last 25%" in x]
    assert early == ["the best evaluation came in the first 10% of training for 1 of the top 4 trials "
                     "(trial 0: step 50 of 1000): too many steps: the run could be shorter, or the LR too high"]
    assert late == ["the best evaluation came in the last 25% of training for 2 of the top 4 trials "
                    "(trial 1: step 980 of 1000): still improving at the end: train longer or re-tune the decay"]
    final = dataclasses.replace(view(trials), objective="final")  # best_step is then the last eval
    assert not any("best evaluation" in x for x in analyse(final).warnings)


def test_best_step_quiet_in_the_middle() -> None:
    trials = [done(i, 0.9 - i / 10, 10 ** (-3 + i / 4), best_step=400 + 50 * i, steps=1000) for i in range(4)]
    assert not any("best evaluation" in w for w in analyse(view(trials)).warnings)


def test_too_few_complete_trials() -> None:
    a = analyse(view([done(0, 0.9, 1e-3), TrialRecord(1, "running", {})], planned=10))
    assert a.warnings[0].startswith("only 1 of 10 planned trials are complete: too few")
    assert a.best is not None and a.best.number == 0
    assert a.counts == {"complete": 1, "infeasible": 0, "failed": 0, "running": 1, "pruned": 0,
                        "planned": 10, "reruns": 0}


def test_axes_include_infeasible_trials_with_reason() -> None:
    trials = [done(0, 0.9, 1e-3), TrialRecord(1, "infeasible", {"optim.lr": 0.05}, reason="divergence: x")]
    axis = analyse(view(trials)).axes[0]
    assert axis.dim is LR
    assert [(p.number, p.objective, p.state, p.reason) for p in axis.points] == [
        (0, 0.9, "complete", None), (1, None, "infeasible", "divergence: x")]


def test_isolation_picks_the_best_trial_per_value() -> None:
    rows = [("relu", 1e-3, 0.80), ("relu", 1e-2, 0.85), ("gelu", 1e-3, 0.70), ("gelu", 3e-3, 0.90),
            ("gelu", 1e-2, 0.60)]
    trials = [TrialRecord(i, "complete", {"model.act": act, "optim.lr": lr}, value=v)
              for i, (act, lr, v) in enumerate(rows)]
    trials.append(TrialRecord(9, "infeasible", {"model.act": "relu", "optim.lr": 0.09}, reason="divergence"))
    iso = analyse(view(trials, dims=[ACT, LR], scientific=["model.act"])).isolation[0]
    assert not iso.bucketed
    got = {r.value: (r.best.number if r.best else None, r.objective, r.n_complete, r.n) for r in iso.rows}
    assert got == {"gelu": (3, 0.90, 3, 3), "relu": (1, 0.85, 2, 3)}


def test_isolation_buckets_a_continuous_key_in_its_own_scale() -> None:
    lrs = [1.1e-4, 2e-4, 1.5e-3, 1e-3, 9e-2]
    trials = [done(i, v, lr) for i, (lr, v) in enumerate(zip(lrs, [0.1, 0.2, 0.5, 0.4, 0.3], strict=True))]
    iso = analyse(view(trials, scientific=["optim.lr"])).isolation[0]
    assert iso.bucketed
    # log buckets of [1e-4, 0.1]: edges 1e-4, 4e-4, 1.6e-3, 6.3e-3, 2.5e-2, 0.1
    assert [(r.label, r.best.number if r.best else None, r.n) for r in iso.rows] == [
        ("0.0001 .. 0.0003981", 1, 2), ("0.0003981 .. 0.001585", 2, 2), ("0.02512 .. 0.1", 4, 1)]


def test_importances_with_enough_trials_and_empty_with_too_few() -> None:
    trials = [done(i, -abs(math.log10(lr) + 2.5), lr, wd=(i * 0.37) % 0.1)
              for i, lr in enumerate(10 ** (-4 + 3 * k / 19) for k in range(20))]
    imp = analyse(view(trials)).importances
    assert set(imp) == {"optim.lr", "optim.weight_decay"}
    assert imp["optim.lr"] > imp["optim.weight_decay"]
    assert sum(imp.values()) == pytest.approx(1.0)
    assert analyse(view(trials)).importances == imp  # deterministic
    few = analyse(view(trials[:2]))
    assert few.importances == {}
    assert few.importance_note is not None and "at least 3 complete trials" in few.importance_note


def test_seed_groups_tie_and_clear_difference() -> None:
    trials = [done(0, 0.900, 1e-3), done(1, 0.899, 2e-3), done(2, 0.800, 3e-3)]
    reruns = [(0, 0.895), (0, 0.905), (1, 0.897), (1, 0.901), (2, 0.805), (2, 0.795)]
    trials += [done(10 + i, v, 1e-3, rerun_of=o, seed=i + 1) for i, (o, v) in enumerate(reruns)]
    a = analyse(view(trials))
    groups = {g.origin: g for g in a.seed_groups}
    assert set(groups) == {0, 1, 2}
    assert groups[0].n == 3 and groups[0].mean == pytest.approx(0.9) and groups[0].std == pytest.approx(0.005)
    assert (min(groups[2].values), max(groups[2].values)) == (0.795, 0.805)
    verdicts = {t.other: t.verdict for t in a.ties}
    assert verdicts == {1: "tie", 2: "worse"}
    tie = next(t for t in a.ties if t.other == 1)
    assert tie.best == 0 and "ties with trial 0" in tie.sentence and "within the seed noise" in tie.sentence
    worse = next(t for t in a.ties if t.other == 2)
    assert "is worse than trial 0" in worse.sentence and "exceeds the seed noise" in worse.sentence


def test_seed_group_can_beat_the_lucky_best_trial() -> None:
    # trial 0 won the search by luck: its reruns fall back, trial 1's hold up
    trials = [done(0, 0.95, 1e-3), done(1, 0.94, 2e-3), done(2, 0.5, 3e-3)]
    trials += [done(10, 0.92, 1e-3, rerun_of=0), done(11, 0.92, 1e-3, rerun_of=0),
               done(12, 0.96, 2e-3, rerun_of=1), done(13, 0.96, 2e-3, rerun_of=1)]
    (t,) = analyse(view(trials)).ties
    assert (t.best, t.other, t.verdict) == (0, 1, "better")
    assert t.sentence.startswith("trial 1 (0.9533 ± 0.01155 over 3 seeds) is better than trial 0")


def test_lower_is_better_ranks_and_warns_the_right_way() -> None:
    trials = [done(0, 0.1, 0.08), done(1, 0.2, 0.09), done(2, 0.3, 0.07), done(3, 5.0, 1e-4)]
    a = analyse(view(trials, higher=False))
    assert [t.number for t in a.top] == [0, 1, 2, 3]
    assert any("upper edge of optim.lr (3 of the top 3" in w for w in a.warnings)


def test_rescued_trials_are_named() -> None:
    trials = [done(i, 0.9 - i / 100, 10 ** (-4 + i / 2)) for i in range(6)]
    trials[2].interventions = {"rollbacks": 1, "skips": 0}
    w = [x for x in analyse(view(trials)).warnings if "rolled back" in x]
    assert w == ["1 complete trial (2) finished only after the autopilot rolled back and lowered the learning "
                 "rate: their values belong to a lower rate than sampled, and their points sit near the edge of "
                 "stability"]
    trials[2].interventions = {"rollbacks": 0, "skips": 3}
    assert not [x for x in analyse(view(trials)).warnings if "rolled back" in x]
