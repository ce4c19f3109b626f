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

MAX_POINTS = 2000
"""Points per curve in the page. Min/max decimation at 2000 points keeps every spike of a
1280-pixel-wide chart (two points per pixel column) and keeps the page light for 1M-step runs."""


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


def downsample_indices(ys: Sequence[float], max_points: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``max_points`` points that keep the shape of ``ys``.

    Min/max decimation: the first and the last point, then per bucket of consecutive points
    the smallest and the largest value, so a one-step spike survives any amount of
    thinning (an average would smear it out). A bucket that holds a non-finite value keeps
    one of them (the curve shows its gap) and its largest finite value.
    """
    n = len(ys)
    if n <= max_points:
        return list(range(n))
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    buckets = (max_points - 2) // 2
    keep = {0, n - 1}
    inner = n - 2
    for b in range(buckets):
        lo = 1 + b * inner // buckets
        hi = 1 + (b + 1) * inner // buckets
        finite = [i for i in range(lo, hi) if math.isfinite(ys[i])]
        bad = next((i for i in range(lo, hi) if not math.isfinite(ys[i])), None)
        if finite:
            top = max(finite, key=lambda i: ys[i])
            keep.add(top)
            keep.add(bad if bad is not None else min(finite, key=lambda i: ys[i]))
        elif bad is not None:
            keep.add(bad)
    return sorted(keep)


def segments(
    xs: Sequence[float], ys: Sequence[float], max_points: int = MAX_POINTS
) -> list[Segment]:
    """The curve as solid and faded stretches, downsampled to about ``max_points`` in all."""
    n = len(xs)
    if n == 0:
        return []
    # attempts: a new one starts where the step does not increase (the run went back)
    starts = [0] + [i for i in range(1, n) if xs[i] <= xs[i - 1]]
    bounds = list(zip(starts, starts[1:] + [n], strict=True))
    # a point is replaced when a later attempt starts at or before its step
    later_min = math.inf
    cut: list[int] = [0] * len(bounds)
    for a in range(len(bounds) - 1, -1, -1):
        lo, hi = bounds[a]
        live_end = lo
        while live_end < hi and xs[live_end] < later_min:
            live_end += 1
        cut[a] = live_end
        later_min = min(later_min, xs[lo])
    out = []
    for (lo, hi), live_end in zip(bounds, cut, strict=True):
        for a, b, faded in ((lo, live_end, False), (max(lo, live_end - 1), hi, True)):
            if b - a <= 0 or (faded and b == live_end):
                continue  # nothing replaced in this attempt
            budget = max(4, round(max_points * (b - a) / n))
            keep = [a + i for i in downsample_indices(ys[a:b], budget)]
            out.append(
                Segment(
                    x=[xs[i] for i in keep],
                    y=[ys[i] if math.isfinite(ys[i]) else None for i in keep],
                    faded=faded,
                )
            )
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
