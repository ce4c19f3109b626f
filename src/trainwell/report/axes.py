"""The frame every chart is drawn in: a box with margins, scales from data to pixels, the
axes with their grid and tick labels, the axis titles (``report.charts`` and
``report.binned`` draw their marks inside it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Box:
    """A chart's size and margins in pixels; the plot area is what the margins leave."""

    width: int = 520
    height: int = 300
    left: int = 70
    right: int = 14
    top: int = 14
    bottom: int = 50

    @property
    def x0(self) -> int:
        return self.left

    @property
    def x1(self) -> int:
        return self.width - self.right

    @property
    def y0(self) -> int:
        return self.top

    @property
    def y1(self) -> int:
        return self.height - self.bottom


BOX = Box()


class Scale:
    """Maps data values to pixels, linearly or on log10 (a log scale over a range that is not
    all positive falls back to linear)."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        self.log = log and lo > 0 and hi > 0
        f = math.log10 if self.log else float
        self.lo, self.hi = f(lo), f(hi)
        if self.hi <= self.lo:
            self.lo, self.hi = self.lo - 0.5, self.hi + 0.5
        self.a, self.b = a, b

    def __call__(self, v: float) -> float:
        x = math.log10(v) if self.log and v > 0 else (self.lo if self.log else v)
        return self.a + (x - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self) -> list[float]:
        """Round values inside the range: decades on a log scale over two or more (1, 2, 5
        per decade below that), else steps of 1, 2 or 5 times a power of ten (at most 6)."""
        if self.log:
            decades = range(math.ceil(self.lo), math.floor(self.hi) + 1)
            steps = (1,) if len(decades) >= 2 else (1, 2, 5)
            return [m * 10.0**d for d in range(math.floor(self.lo), math.ceil(self.hi) + 1)
                    for m in steps if self.lo <= math.log10(m * 10.0**d) <= self.hi]
        span = self.hi - self.lo
        step = 10 ** math.floor(math.log10(span / 5))
        step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= 6)
        first = math.ceil(self.lo / step)
        return [round(i * step, 12) for i in range(first, math.floor(self.hi / step) + 1)]

    def label(self, v: float) -> str:
        """A tick's text: ``1e-4`` for a decade on a log scale, ``250k`` or ``1.5M`` from
        ten thousand up (where 4 significant digits would print ``2.5e+05``), else 4
        significant digits."""
        if self.log and v > 0 and math.log10(v) == round(math.log10(v)):
            return f"1e{round(math.log10(v))}"
        for above, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
            if abs(v) >= above:
                return f"{v / unit:.4g}{suffix}"
        return f"{v:.4g}"


def value_range(values: Sequence[float], pad: float = 0.05, log: bool = False) -> tuple[float, float]:
    """The finite (and, for ``log``, positive) values' span, widened by ``pad`` of it on each
    side (a factor on a log scale); a made-up span when there is nothing to show."""
    vals = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return (0.1, 1.0) if log else (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if log:
        return lo / (hi / lo) ** pad if hi > lo else lo / 2, hi * (hi / lo) ** pad if hi > lo else hi * 2
    d = (hi - lo) * pad if hi > lo else abs(hi) * 0.05 or 1.0  # a single value: a span around it
    return lo - d, hi + d


def opening(attrs: str, box: Box, title: str) -> list[str]:
    """The ``<svg>`` tag, the white background, the plot's border and the title."""
    w, h = box.width, box.height
    out = [f'<svg class="chart fit" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11" {attrs}>',
           f'<rect width="{w}" height="{h}" fill="#fff"/>',
           f'<rect x="{box.x0}" y="{box.y0}" width="{box.x1 - box.x0}" height="{box.y1 - box.y0}" '
           'fill="none" stroke="#bbb"/>']
    if title:
        out.append(f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>')
    return out


def x_axis(x: Scale, xticks: list[tuple[float, str]] | None, box: Box) -> list[str]:
    """Vertical grid lines (one path) with their labels under the plot."""
    ticks = xticks if xticks is not None else [(v, x.label(v)) for v in x.ticks()]
    if not ticks:
        return []
    stagger = len(ticks) > 4 and xticks is not None  # long category labels take two rows
    grid = "".join(f"M{x(v):.1f} {box.y0}V{box.y1}" for v, _ in ticks)
    labels = "".join(f'<text x="{x(v):.1f}" y="{box.y1 + 14 + (12 if stagger and i % 2 else 0)}">{escape(label)}</text>'
                     for i, (v, label) in enumerate(ticks))
    return [f'<path d="{grid}" stroke="#eee"/><g text-anchor="middle">{labels}</g>']


def y_axis(y: Scale, box: Box) -> list[str]:
    """Horizontal grid lines (one path) with their labels left of the plot."""
    ticks = y.ticks()
    if not ticks:
        return []
    grid = "".join(f"M{box.x0} {y(v):.1f}H{box.x1}" for v in ticks)
    labels = "".join(f'<text x="{box.x0 - 5}" y="{y(v) + 4:.1f}">{escape(y.label(v))}</text>' for v in ticks)
    return [f'<path d="{grid}" stroke="#eee"/><g text-anchor="end">{labels}</g>']


def axis_labels(xlabel: str, ylabel: str, box: Box) -> str:
    """The x label under the tick labels, the y label turned up along the left edge."""
    mid_y = (box.y0 + box.y1) / 2
    return (f'<text class="axlabel" x="{(box.x0 + box.x1) / 2}" y="{box.height - 8}" text-anchor="middle">'
            f'{escape(xlabel)}</text><text class="axlabel" x="13" y="{mid_y}" text-anchor="middle" '
            f'transform="rotate(-90 13 {mid_y})">{escape(ylabel)}</text>')


def frame(x: Scale, y: Scale, xlabel: str, ylabel: str, attrs: str = "",
          xticks: list[tuple[float, str]] | None = None, box: Box = BOX, title: str = "") -> list[str]:
    """An SVG's opening, its title, axes, grid lines and labels (closed by the caller with
    ``"</svg>"``). ``xticks`` are (value, text) pairs for category axes; ``attrs`` is markup
    added to the ``<svg>`` tag (``data-*`` attributes for tests and scripts)."""
    return [*opening(attrs, box, title), *x_axis(x, xticks, box), *y_axis(y, box),
            axis_labels(xlabel, ylabel, box)]
