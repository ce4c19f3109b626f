"""Benchmark scoring: ratios, profiles, the exact AlgoPerf score, speed-ups, bootstrap verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainwell.bench.scoring import (
    ScoringInputError,
    benchmark_score,
    benchmark_scores,
    bootstrap_ci,
    performance_profile,
    performance_ratios,
    ratio_ci,
    speedup_over,
    verdict,
)

INF = math.inf

# Three submissions on three workloads; C never reached w2.
TIMES = {
    "A": {"w1": 100.0, "w2": 200.0, "w3": 250.0},
    "B": {"w1": 150.0, "w2": 100.0, "w3": 1000.0},
    "C": {"w1": 300.0, "w2": INF, "w3": 125.0},
}


def test_hand_worked_ratios() -> None:
    # best times: w1 = 100 (A), w2 = 100 (B), w3 = 125 (C)
    # A: 100/100 = 1,   200/100 = 2,   250/125 = 2
    # B: 150/100 = 1.5, 100/100 = 1,  1000/125 = 8
    # C: 300/100 = 3,   inf/100 = inf, 125/125 = 1
    assert performance_ratios(TIMES) == {
        "A": {"w1": 1.0, "w2": 2.0, "w3": 2.0},
        "B": {"w1": 1.5, "w2": 1.0, "w3": 8.0},
        "C": {"w1": 3.0, "w2": INF, "w3": 1.0},
    }


def test_hand_worked_scores() -> None:
    # r_max = 4, so B_s = (1/3) * integral_1^4 rho_s(tau) dtau; n = 3 workloads.
    # A, ratios {1, 2, 2}: rho = 1/3 on [1, 2), 3/3 on [2, 4]
    #    area = 1/3 * 1 + 1 * 2 = 7/3            -> B_A = 7/9  = 0.777...
    # B, ratios {1.5, 1, 8}: rho = 1/3 on [1, 1.5), 2/3 on [1.5, 4] (8 > 4 never counts)
    #    area = 1/3 * 0.5 + 2/3 * 2.5 = 11/6     -> B_B = 11/18 = 0.611...
    # C, ratios {3, inf, 1}: rho = 1/3 on [1, 3), 2/3 on [3, 4] (inf never counts)
    #    area = 1/3 * 2 + 2/3 * 1 = 4/3          -> B_C = 4/9  = 0.444...
    scores = benchmark_scores(TIMES, r_max=4.0)
    assert scores.keys() == {"A", "B", "C"}
    assert scores["A"] == pytest.approx(7 / 9, abs=1e-9)
    assert scores["B"] == pytest.approx(11 / 18, abs=1e-9)
    assert scores["C"] == pytest.approx(4 / 9, abs=1e-9)


def test_hand_worked_profile() -> None:
    ratios = performance_ratios(TIMES)
    taus = [1.0, 1.5, 2.0, 3.0, 4.0, 100.0]
    # rho * 3 = how many of the three ratios are <= tau
    counts = {"A": [1, 1, 3, 3, 3, 3], "B": [1, 2, 2, 2, 2, 3], "C": [1, 1, 1, 2, 2, 2]}
    for sub, expected in counts.items():
        rho = performance_profile(ratios[sub], taus)
        np.testing.assert_allclose(rho, np.array(expected) / 3, err_msg=sub)


def test_score_matches_fine_riemann_sum() -> None:
    # brute-force reference: midpoint rule on rho over [1, r_max] with a very fine grid
    rng = np.random.default_rng(3)
    ratios = np.concatenate([1 + rng.exponential(1.5, size=20), [1.0, 4.0, INF]])
    r_max = 4.0
    edges = np.linspace(1.0, r_max, 300_001)
    mids = (edges[:-1] + edges[1:]) / 2
    riemann = performance_profile(ratios, mids).mean()  # = integral / (r_max - 1)
    assert benchmark_score(ratios, r_max) == pytest.approx(riemann, abs=1e-4)


def test_best_everywhere_scores_one() -> None:
    times = {"fast": {"w1": 1.0, "w2": 5.0}, "slow": {"w1": 2.0, "w2": 6.0}}
    assert benchmark_scores(times)["fast"] == 1.0


@pytest.mark.parametrize("slow_times", [{"w1": 4.5, "w2": 50.0}, {"w1": INF, "w2": INF}, {}])
def test_beyond_r_max_or_missed_everywhere_scores_zero(slow_times: dict[str, float]) -> None:
    times = {"fast": {"w1": 1.0, "w2": 10.0}, "slow": slow_times}
    assert benchmark_scores(times)["slow"] == 0.0


def test_ratio_exactly_at_r_max_earns_nothing() -> None:
    assert benchmark_score([4.0], r_max=4.0) == 0.0
    assert benchmark_score({"w1": 4.0, "w2": 1.0}, r_max=4.0) == pytest.approx(0.5)
    assert benchmark_score([4.0 - 3e-6], r_max=4.0) == pytest.approx(1e-6)  # just below: a sliver
    assert benchmark_score([4.0], r_max=5.0) == pytest.approx(0.25)  # a wider window counts it


def test_missing_workload_counts_as_missed() -> None:
    times = {"A": {"w1": 1.0, "w2": 1.0}, "B": {"w1": 1.0}}
    assert performance_ratios(times)["B"] == {"w1": 1.0, "w2": INF}
    assert benchmark_scores(times) == {"A": 1.0, "B": 0.5}


def test_workload_nobody_reached_is_inf_for_all() -> None:
    times = {"A": {"w1": 1.0, "w2": INF}, "B": {"w1": 2.0, "w2": INF}}
    ratios = performance_ratios(times)
    assert ratios["A"]["w2"] == INF and ratios["B"]["w2"] == INF
    assert benchmark_scores(times)["A"] == 0.5


def test_profiles_are_monotone_in_tau() -> None:
    rng = np.random.default_rng(0)
    times = {f"s{i}": {f"w{j}": float(rng.lognormal(0, 1)) for j in range(8)} for i in range(5)}
    times["s0"]["w3"] = INF
    taus = np.linspace(0.5, 20.0, 400)
    for ratios in performance_ratios(times).values():
        rho = performance_profile(ratios, taus)
        assert np.all(np.diff(rho) >= 0)
        assert rho[0] == 0.0 and 0.0 <= rho[-1] <= 1.0


def test_speedup_over_reference() -> None:
    # over A: B takes 100/150, 200/100, 250/1000 -> geomean (2/3 * 2 * 1/4)^(1/3) = (1/3)^(1/3)
    #         C on w1 and w3 only (missed w2): 100/300, 250/125 -> (1/3 * 2)^(1/2) = (2/3)^(1/2)
    speedups = speedup_over(TIMES, reference="A")
    assert speedups["A"] == pytest.approx(1.0)
    assert speedups["B"] == pytest.approx((1 / 3) ** (1 / 3), abs=1e-12)
    assert speedups["C"] == pytest.approx((2 / 3) ** 0.5, abs=1e-12)


def test_speedup_is_nan_without_shared_reached_workloads() -> None:
    times = {"ref": {"w1": 1.0, "w2": INF}, "other": {"w1": INF, "w2": 3.0}}
    assert math.isnan(speedup_over(times, "ref")["other"])
    with pytest.raises(ValueError, match="'nobody'"):
        speedup_over(times, "nobody")


def test_nan_time_names_submission_and_workload() -> None:
    times = {"A": {"w1": 1.0, "w2": 2.0}, "B": {"w1": 1.5, "w2": math.nan}}
    with pytest.raises(ValueError, match=r"submission 'B' on workload 'w2' is nan"):
        performance_ratios(times)
    with pytest.raises(ValueError, match=r"'B'.*'w2'"):
        benchmark_scores(times)
    with pytest.raises(ValueError, match=r"'B'.*'w2'"):
        speedup_over(times, "A")


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"'A'.*'w1'.*> 0"):
        performance_ratios({"A": {"w1": 0.0}})
    with pytest.raises(ValueError, match="workload 'w9'"):
        benchmark_score({"w1": 1.0, "w9": math.nan})
    with pytest.raises(ValueError, match="r_max"):
        benchmark_score([1.0], r_max=1.0)
    with pytest.raises(ValueError, match="empty"):
        benchmark_score([])
    with pytest.raises(ValueError, match="nan or inf"):
        bootstrap_ci([1.0, math.nan])
    assert issubclass(ScoringInputError, ValueError)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(1).normal(10.0, 2.0, size=15)
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)
    assert ratio_ci(x, x + 1, seed=7) == ratio_ci(x, x + 1, seed=7)


def test_bootstrap_contains_the_mean_and_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(2)
    small, large = rng.normal(5.0, 1.0, size=10), rng.normal(5.0, 1.0, size=1000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s
    assert lo_l < large.mean() < hi_l
    assert hi_l - lo_l < 0.5 * (hi_s - lo_s)  # width ~ 1/sqrt(n): expect ~10x narrower


def test_bootstrap_level_widens_interval() -> None:
    x = np.random.default_rng(4).normal(0.0, 1.0, size=30)
    lo90, hi90 = bootstrap_ci(x, level=0.90)
    lo99, hi99 = bootstrap_ci(x, level=0.99)
    assert lo99 < lo90 and hi90 < hi99


def test_ratio_ci_brackets_ratio_of_means() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(200.0, 10.0, size=20), rng.normal(100.0, 5.0, size=12)  # A ~2x slower
    lo, hi = ratio_ci(a, b)
    assert lo < a.mean() / b.mean() < hi
    assert 1.8 < lo and hi < 2.2


def test_verdict_tie_vs_clear_difference() -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(100.0, 10.0, size=10)
    same = rng.normal(100.0, 10.0, size=10)
    assert verdict(base, same, higher_is_better=True) == "tie"
    assert verdict(base, same, higher_is_better=False) == "tie"
    much_higher = base + 50.0
    assert verdict(much_higher, base, higher_is_better=True) == "better"
    assert verdict(much_higher, base, higher_is_better=False) == "worse"  # e.g. time to target
    assert verdict(base, much_higher, higher_is_better=False) == "better"
