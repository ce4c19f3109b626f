"""Curves from metric rows: collect one key, split it where a rollback rewound the steps,
and downsample it so that a long run stays light in the browser.

A rollback (or a resume after a crash) restores an earlier checkpoint, so ``metrics.jsonl``
then holds the abandoned stretch and, after it, the same steps again. Plotting in logged
order with the step as x, the abandoned points are the ones some later attempt logged
again from an earlier or equal step; they are drawn faded, the rest solid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_POINTS = 2000
"""Points per curve in the page. Min/max decimation at 2000 points keeps every spike of a
1280-pixel-wide chart (two points per pixel column) and keeps the page light for 1M-step runs."""


SMOOTH_SPAN = 50
"""The smoothed line averages over 1/50 of a stretch's points (at least 5): it shows the
trend of a noisy loss without hiding turns that last longer than 2% of the run."""


@dataclass
class Segment:
    """A stretch of one curve with increasing steps. ``y`` is None where the value was not finite."""

    x: list[float]
    y: list[float | None]
    faded: bool = False
    """True for points a later attempt replaced (the run was rolled back past them)."""


def collect(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` in logged order, over the rows that have a number for it."""
    xs, ys = [], []
    for row in rows:
        v = row.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        xs.append(float(row["step"]))
        ys.append(float(v))
    return xs, ys


def columns(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """{key: (steps, values)} for every numeric key, in one pass over the rows (a long run
    has millions of rows; scanning them once per key would cost minutes)."""
    cols: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        step = float(row["step"])
        for k, v in row.items():
            t = type(v)  # exact types: bool is not a number here, and this is the hot loop
            if (t is not float and t is not int) or k == "step":
                continue
            col = cols.get(k)
            if col is None:
                col = cols[k] = ([], [])
            col[0].append(step)
            col[1].append(float(v))
    return cols


def downsample_indices(ys: Sequence[float], max_points: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``max_points`` points that keep the shape of ``ys``.

    Min/max decimation: the first and the last point, then per bucket of consecutive points
    the smallest and the largest value, so a one-step spike survives any amount of
    thinning (an average would smear it out). A bucket that holds a non-finite value keeps
    the first of them (the curve shows its gap) and its largest finite value.
    Vectorised with numpy: a million-point curve takes a fraction of a second.
    """
    n = len(ys)
    if n <= max_points:
        return list(range(n))
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    buckets = (max_points - 2) // 2
    v = np.asarray(ys, dtype=np.float64)[1:-1]  # (n - 2,) the inner points
    bucket = np.arange(v.size) * buckets // v.size  # (n - 2,) contiguous, non-decreasing
    finite = np.isfinite(v)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])  # first index of each bucket

    def extreme(values: np.ndarray) -> np.ndarray:  # per bucket, the index of the largest value
        order = np.lexsort((-values, bucket))  # by bucket, largest first
        return order[starts]

    top = extreme(np.where(finite, v, -np.inf))
    bottom = extreme(np.where(finite, -v, -np.inf))
    bad_at = np.flatnonzero(~finite)
    bad_buckets, first = np.unique(bucket[bad_at], return_index=True)
    has_bad = np.zeros(starts.size, dtype=bool)
    has_bad[bad_buckets] = True
    keep = np.concatenate([top, bottom[~has_bad[bucket[bottom]]], bad_at[first]]) + 1
    return sorted({0, n - 1, *keep.tolist()})


def stretches(xs: Sequence[float]) -> list[tuple[int, int, bool]]:
    """(start, stop, faded) index ranges of the curve in logged order.

    A new attempt starts where the step does not increase (the run went back); a point is
    replaced (faded) when a later attempt starts at or before its step. A faded stretch
    begins at the last point kept, so that it joins the solid line."""
    n = len(xs)
    if n == 0:
        return []
    starts = [0] + [i for i in range(1, n) if xs[i] <= xs[i - 1]]
    bounds = list(zip(starts, starts[1:] + [n], strict=True))
    later_min = math.inf
    out: list[tuple[int, int, bool]] = []
    for lo, hi in reversed(bounds):
        live_end = lo
        while live_end < hi and xs[live_end] < later_min:
            live_end += 1
        if hi > live_end:  # part of this attempt was redone later
            out.append((max(lo, live_end - 1), hi, True))
        if live_end > lo:
            out.append((lo, live_end, False))
        later_min = min(later_min, xs[lo])
    return out[::-1]


def segments(
    xs: Sequence[float], ys: Sequence[float], max_points: int = MAX_POINTS
) -> list[Segment]:
    """The curve as solid and faded stretches, downsampled to about ``max_points`` in all."""
    out = []
    for a, b, faded in stretches(xs):
        budget = max(4, round(max_points * (b - a) / len(xs)))
        keep = [a + i for i in downsample_indices(ys[a:b], budget)]
        out.append(Segment(
            x=[xs[i] for i in keep],
            y=[ys[i] if math.isfinite(ys[i]) else None for i in keep],
            faded=faded,
        ))
    return out


def smoothed_segments(
    xs: Sequence[float], ys: Sequence[float], max_points: int = MAX_POINTS
) -> list[Segment]:
    """The solid stretches smoothed at full resolution (before any downsampling, so that the
    line is the real trend): a centred moving mean over ~1/SMOOTH_SPAN of the points.
    Centred, so it does not lag; a one-step spike moves it by only spike / window."""
    out = []
    for a, b, faded in stretches(xs):
        if faded:
            continue
        y = np.asarray(ys[a:b], dtype=np.float64)
        ok = np.isfinite(y)
        half = max(2, (b - a) // (2 * SMOOTH_SPAN))
        sums = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
        counts = np.concatenate([[0], np.cumsum(ok)])
        i = np.arange(b - a)
        lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, b - a)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (sums[hi] - sums[lo]) / (counts[hi] - counts[lo])
        smooth = np.where(ok, mean, np.nan).tolist()  # keep the gaps where the raw value is missing
        budget = max(4, round(max_points * (b - a) / len(xs)))
        keep = downsample_indices(smooth, budget)
        out.append(Segment(
            x=[xs[a + k] for k in keep],
            y=[smooth[k] if math.isfinite(smooth[k]) else None for k in keep],
        ))
    return out


def nonfinite_points(xs: Sequence[float], ys: Sequence[float], limit: int = 200) -> list[list[Any]]:
    """[step, "nan" | "inf" | "-inf"] for up to ``limit`` non-finite values (marked on the chart)."""
    out: list[list[Any]] = []
    for x, y in zip(xs, ys, strict=True):
        if not math.isfinite(y):
            out.append([x, "nan" if y != y else ("inf" if y > 0 else "-inf")])
            if len(out) >= limit:
                break
    return out


def rolling_mean(ys: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values (fewer at the start); non-finite values skipped."""
    out, acc, count, buf = [], 0.0, 0, []
    for y in ys:
        buf.append(y)
        if math.isfinite(y):
            acc, count = acc + y, count + 1
        if len(buf) > window:
            old = buf.pop(0)
            if math.isfinite(old):
                acc, count = acc - old, count - 1
        out.append(acc / count if count else math.nan)
    return out


def wants_log(ys: Sequence[float], ratio: float = 100.0) -> bool:
    """Whether a log y axis reads better: all finite values positive and spanning > ``ratio``x."""
    finite = [y for y in ys if math.isfinite(y)]
    if len(finite) < 2 or min(finite) <= 0:
        return False
    return max(finite) / min(finite) > ratio
