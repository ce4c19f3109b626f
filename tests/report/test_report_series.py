"""Downsampling keeps spikes and caps the points; rollbacks split curves into solid and faded stretches."""

from __future__ import annotations

import math
import random

import pytest

from trainwell.report.series import (
    collect,
    downsample_indices,
    nonfinite_points,
    rolling_mean,
    segments,
    smoothed_segments,
    wants_log,
)


def _noisy(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [1.0 / (1 + i / 100) + 0.05 * rng.random() for i in range(n)]


def test_downsampling_caps_points_and_keeps_the_spike_and_the_ends() -> None:
    ys = _noisy(100_000)
    spike_at = 54_321
    ys[spike_at] = 100.0
    dip_at = 77_777
    ys[dip_at] = -5.0
    keep = downsample_indices(ys, 2000)
    assert len(keep) <= 2000
    assert len(keep) > 1500  # it uses its budget, not just a handful of points
    assert keep == sorted(set(keep))
    assert spike_at in keep and dip_at in keep
    assert keep[0] == 0 and keep[-1] == len(ys) - 1
    assert max(ys[i] for i in keep) == max(ys)


def test_downsampling_keeps_a_nonfinite_value_visible() -> None:
    ys = _noisy(10_000)
    ys[4_000] = math.nan
    keep = downsample_indices(ys, 500)
    assert len(keep) <= 500
    assert any(math.isnan(ys[i]) for i in keep)  # the gap survives thinning


def test_short_series_is_left_alone() -> None:
    assert downsample_indices([3.0, 1.0, 2.0], 2000) == [0, 1, 2]
    with pytest.raises(ValueError):
        downsample_indices(_noisy(100), 3)


def test_segments_fade_the_stretch_a_rollback_abandoned() -> None:
    # logged steps 1..10, then a rollback to step 6 and on to 12
    xs = [float(s) for s in list(range(1, 11)) + list(range(6, 13))]
    ys = [float(i) for i in range(len(xs))]
    segs = segments(xs, ys)
    solid = [s for s in segs if not s.faded]
    faded = [s for s in segs if s.faded]
    assert [s.x for s in solid] == [[1, 2, 3, 4, 5], list(range(6, 13))]
    assert len(faded) == 1
    assert faded[0].x == [5, 6, 7, 8, 9, 10]  # joined to the last point kept, then the abandoned ones


def test_segments_without_rollback_are_one_solid_stretch_with_gaps_for_nan() -> None:
    xs = [1.0, 2.0, 3.0]
    segs = segments(xs, [1.0, math.nan, 3.0])
    assert len(segs) == 1 and not segs[0].faded
    assert segs[0].y == [1.0, None, 3.0]


def test_segments_share_the_point_budget() -> None:
    n = 30_000
    xs = [float(s) for s in list(range(n)) + list(range(n // 2, n))]
    segs = segments(xs, _noisy(len(xs)), max_points=2000)
    assert sum(len(s.x) for s in segs) <= 2000 + 4 * len(segs)


def test_collect_skips_rows_without_the_key_and_non_numbers() -> None:
    rows = [{"step": 1, "a": 1.0}, {"step": 2}, {"step": 3, "a": "text"}, {"step": 4, "a": True}, {"step": 5, "a": 2}]
    assert collect(rows, "a") == ([1.0, 5.0], [1.0, 2.0])


def test_helpers() -> None:
    assert nonfinite_points([1, 2, 3], [math.nan, 1.0, -math.inf]) == [[1, "nan"], [3, "-inf"]]
    assert rolling_mean([0.0, 1.0, math.nan, 1.0], 2) == [0.0, 0.5, 1.0, 1.0]
    assert wants_log([10.0, 0.01]) and not wants_log([1.0, 2.0]) and not wants_log([-1.0, 1000.0])


def test_smoothed_line_follows_the_trend_without_lag_or_smearing_a_spike() -> None:
    n = 1000
    xs = [float(i) for i in range(n)]
    ramp = [2.0 * i for i in range(n)]
    ramp[500] = 1e6  # one bad step
    ramp[700] = math.nan
    (seg,) = smoothed_segments(xs, ramp)
    at = dict(zip(seg.x, seg.y, strict=True))
    assert at[300.0] == pytest.approx(600.0)  # centred: a ramp stays where it is
    assert at[700.0] is None  # a gap stays a gap
    half = n // (2 * 50)  # the window is 1/50 of the points
    bump = at[505.0] - 1010.0
    assert bump == pytest.approx((1e6 - 1000.0) / (2 * half + 1))  # the spike moves it by spike / window only
    assert at[500.0 + half + 1] == pytest.approx(2 * (500.0 + half + 1))  # and not beyond the window


def test_smoothed_line_skips_abandoned_stretches() -> None:
    xs = [float(s) for s in list(range(1, 101)) + list(range(50, 151))]
    segs = smoothed_segments(xs, [1.0] * len(xs))
    assert [(s.x[0], s.x[-1]) for s in segs] == [(1.0, 49.0), (50.0, 150.0)]
