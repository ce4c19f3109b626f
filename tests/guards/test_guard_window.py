from __future__ import annotations

import random
import statistics

import pytest

from trainwell.guards.window import RollingWindow


def test_running_mean_std_match_brute_force_over_a_long_stream():
    rng = random.Random(0)
    win = RollingWindow(16)
    seen: list[float] = []
    for i in range(2000):
        # a tiny spread on a large level: the case where E[x^2] - E[x]^2 cancels badly
        x = 1e4 + 1e-3 * rng.gauss(0, 1) + (i // 500)
        win.push(x)
        seen.append(x)
        ref = seen[-16:]
        mean, std = win.mean_std()
        assert mean == pytest.approx(statistics.fmean(ref), rel=1e-12)
        assert std == pytest.approx(statistics.pstdev(ref), rel=1e-5, abs=1e-9)


def test_median_spread_is_median_and_scaled_mad():
    win = RollingWindow(5, [1.0, 2.0, 3.0, 4.0, 100.0], robust=True)
    med, spread = win.median_spread()
    assert med == 3.0
    assert spread == pytest.approx(1.4826 * 1.0)  # |x - 3| = 2,1,0,1,97 -> MAD 1


def test_reset_and_tolist_round_trip():
    win = RollingWindow(3, [1.0, 2.0, 3.0, 4.0])
    assert win.tolist() == [2.0, 3.0, 4.0]
    other = RollingWindow(3, win.tolist())
    assert other.mean_std() == pytest.approx(win.mean_std())


def test_robust_window_keeps_its_sorted_view_in_step_with_the_values():
    rng = random.Random(1)
    fast, slow = RollingWindow(9, robust=True), RollingWindow(9)
    for _ in range(300):
        x = rng.choice([rng.gauss(0, 1), 1.0, 1e6])  # ties and outliers included
        fast.push(x)
        slow.push(x)
        ref = slow.tolist()
        med = statistics.median(ref)
        assert fast.median_spread() == pytest.approx(
            (med, 1.4826 * statistics.median(abs(v - med) for v in ref))
        )
        assert slow.median_spread() == fast.median_spread()
