"""A rolling window of the last N values with O(1) mean/std and an O(N) median/MAD.

Plain Python floats on purpose: the loop already made its one host sync per step, and a
guard must cost next to nothing (ARCHITECTURE.md, rule 7).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable

MAD_TO_STD = 1.4826
"""MAD x 1.4826 estimates the standard deviation of a normal distribution (1 / Phi^-1(3/4))."""


class RollingWindow:
    """The last ``size`` values, with running sums for the mean and the variance.

    The sums are of ``x - shift`` (``shift`` = a recent value), which keeps
    ``E[x^2] - E[x]^2`` free of cancellation when the spread is tiny next to the level
    (a loss of 3.0 +- 0.001). They are recomputed from scratch every ``size`` pushes so
    that rounding errors of the add/remove pairs cannot pile up.

    ``robust=True`` also keeps the values sorted (bisect, O(N) memmove in C) so that the
    median costs O(1) and the MAD one pass.
    """

    def __init__(self, size: int, values: Iterable[float] = (), robust: bool = False) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.size = size
        self.values: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = [] if robust else None
        self.reset(values)

    def reset(self, values: Iterable[float] = ()) -> None:
        self.values.clear()
        self.values.extend(float(v) for v in values)
        if self._sorted is not None:
            self._sorted = sorted(self.values)
        self._recompute()

    def _recompute(self) -> None:
        self._shift = self.values[-1] if self.values else 0.0
        self._sum = math.fsum(v - self._shift for v in self.values)
        self._sumsq = math.fsum((v - self._shift) ** 2 for v in self.values)
        self._pushes = 0
        self._set_stats()

    def _set_stats(self) -> None:
        n = len(self.values)
        if n == 0:
            self.mean = self.std = 0.0
            return
        m = self._sum / n
        var = self._sumsq / n - m * m
        self.mean = self._shift + m
        self.std = math.sqrt(var) if var > 0.0 else 0.0

    def push(self, x: float) -> None:
        values, srt = self.values, self._sorted  # locals: push runs a few times every step
        n = len(values)
        if not n:
            self._shift = x  # the first value sets the level the sums are taken around
        elif n == self.size:
            first = values[0]
            old = first - self._shift
            self._sum -= old
            self._sumsq -= old * old
            if srt is not None:
                del srt[bisect.bisect_left(srt, first)]
        if srt is not None:
            bisect.insort(srt, x)
        values.append(x)
        d = x - self._shift
        self._sum += d
        self._sumsq += d * d
        self._pushes += 1
        if self._pushes >= self.size:
            self._recompute()  # sets the statistics too
        else:  # at every change rather than at every read: the guards read them every step
            self._set_stats()

    def __len__(self) -> int:
        return len(self.values)

    def mean_std(self) -> tuple[float, float]:
        """Mean and population standard deviation, O(1) (kept up to date by every change:
        also readable as the attributes ``mean`` and ``std``)."""
        return self.mean, self.std

    def median_spread(self) -> tuple[float, float]:
        """Median and MAD x 1.4826 (a standard deviation that one outlier cannot inflate), O(N log N)."""
        if not self.values:
            return 0.0, 0.0
        ordered = self._sorted if self._sorted is not None else sorted(self.values)
        med = _median_sorted(ordered)
        # |x - med| over sorted x is two sorted runs, which Timsort merges in O(N)
        mad = _median_sorted(sorted([abs(v - med) for v in ordered]))
        return med, MAD_TO_STD * mad

    def tolist(self) -> list[float]:
        return list(self.values)

    def sums(self) -> list[float]:
        """[shift, sum, sum of squares, pushes since the last recompute]: with ``tolist()``
        this makes a restored window continue bit for bit (resume is exact)."""
        return [self._shift, self._sum, self._sumsq, float(self._pushes)]

    def load(self, values: Iterable[float], sums: list[float] | None = None) -> None:
        """Restore from ``tolist()`` and ``sums()`` (without sums: recompute them)."""
        values = list(values)
        self.reset(values)
        if sums is not None and len(values) == len(self.values):  # not cut to a smaller size
            self._shift, self._sum, self._sumsq = sums[0], sums[1], sums[2]
            self._pushes = int(sums[3])
            self._set_stats()


def _median_sorted(xs: list[float]) -> float:
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])
