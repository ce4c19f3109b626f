"""Charts as SVG text drawn in Python: the one renderer of the study, bench and LR-finder pages.

Each chart is a complete ``<svg>`` element (with ``xmlns``, ``width`` and ``height``): it
inlines into a page or saves as a ``.svg`` file that any viewer opens, needs no script and
no font file, and its content can be tested as text. Hover text is an SVG ``<title>``;
every label is escaped. Written by hand, not with a plotting library: matplotlib is no
dependency of trainwell and embeds its glyphs (tens of kilobytes per chart), and a
JavaScript library would need a script in every page. The run report's interactive charts
(log toggle, crosshair, step slider) are drawn by its script, ``static/report.js``.

Pieces: ``Scale`` (data to pixels, linear or log10), ``value_range``, ``frame`` (the
opening, axes, grid and labels), ``line_chart`` (lines, vertical markers, a legend). A
page with its own marks (the study's scatter of trials) draws them between ``frame`` and
``"</svg>"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html import escape

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#6b6b6b")
"""Okabe-Ito colours (told apart with every common colour-vision deficiency), then grey."""


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
        """A tick's text: ``1e-4`` for a decade on a log scale, else 4 significant digits."""
        if self.log and v > 0 and math.log10(v) == round(math.log10(v)):
            return f"1e{round(math.log10(v))}"
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


def frame(x: Scale, y: Scale, xlabel: str, ylabel: str, attrs: str = "",
          xticks: list[tuple[float, str]] | None = None, box: Box = BOX, title: str = "") -> list[str]:
    """An SVG's opening, its title, axes, grid lines and labels (closed by the caller with
    ``"</svg>"``). ``xticks`` are (value, text) pairs for category axes; ``attrs`` is markup
    added to the ``<svg>`` tag (``data-*`` attributes for tests and scripts)."""
    w, h = box.width, box.height
    out = [f'<svg class="chart fit" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11" {attrs}>',
           f'<rect width="{w}" height="{h}" fill="#fff"/>',
           f'<rect x="{box.x0}" y="{box.y0}" width="{box.x1 - box.x0}" height="{box.y1 - box.y0}" '
           'fill="none" stroke="#bbb"/>']
    if title:
        out.append(f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>')
    ticks = xticks if xticks is not None else [(v, x.label(v)) for v in x.ticks()]
    stagger = len(ticks) > 4 and xticks is not None  # long category labels take two rows
    for i, (v, label) in enumerate(ticks):
        px, ty = x(v), box.y1 + 14 + (12 if stagger and i % 2 else 0)
        out.append(f'<line x1="{px:.1f}" y1="{box.y0}" x2="{px:.1f}" y2="{box.y1}" stroke="#eee"/>'
                   f'<text x="{px:.1f}" y="{ty}" text-anchor="middle">{escape(label)}</text>')
    for v in y.ticks():
        py = y(v)
        out.append(f'<line x1="{box.x0}" y1="{py:.1f}" x2="{box.x1}" y2="{py:.1f}" stroke="#eee"/>'
                   f'<text x="{box.x0 - 5}" y="{py + 4:.1f}" text-anchor="end">{escape(y.label(v))}</text>')
    mid_y = (box.y0 + box.y1) / 2
    out.append(f'<text class="axlabel" x="{(box.x0 + box.x1) / 2}" y="{h - 8}" text-anchor="middle">'
               f'{escape(xlabel)}</text><text class="axlabel" x="13" y="{mid_y}" text-anchor="middle" '
               f'transform="rotate(-90 13 {mid_y})">{escape(ylabel)}</text>')
    return out


@dataclass(frozen=True)
class Line:
    """One series: ``ys`` over ``xs``; a non-finite y breaks the line. ``color`` "" takes the
    palette colour of the line's position."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = ""
    width: float = 1.5
    opacity: float = 1.0


@dataclass(frozen=True)
class Marker:
    """A dashed vertical line at ``x``, labelled at the top of the plot."""

    x: float
    color: str
    label: str


def finite_runs(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    """The stretches of (x, y) with a finite y, two points or more (a line needs two)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for a, b in zip(xs, ys, strict=False):
        if math.isfinite(b):
            runs[-1].append((a, b))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) >= 2]


def line_chart(lines: Sequence[Line], *, xlabel: str = "", ylabel: str = "", log_x: bool = False,
               ylim: tuple[float, float] | None = None, markers: Sequence[Marker] = (), title: str = "",
               legend: str = "html", attrs: str = "", box: Box = BOX) -> str:
    """Lines on shared axes. x spans the data exactly; y spans the finite values with a
    margin, or ``ylim`` (values beyond it are drawn at its edge). ``legend`` "html" puts a
    ``<div class="legend">`` before the SVG (a page styles it), "svg" draws it inside (a
    standalone file), "" leaves it out."""
    if title:
        box = replace(box, top=box.top + 22)
    xs = [v for line in lines for v in line.xs]
    ys = [v for line in lines for v in line.ys if math.isfinite(v)]
    x = Scale(*value_range(xs, 0.0, log=log_x), box.x0, box.x1, log=log_x)
    y = Scale(*(ylim or value_range(ys)), box.y1, box.y0)
    y_lo, y_hi = (min(ylim), max(ylim)) if ylim else (-math.inf, math.inf)
    out = frame(x, y, xlabel, ylabel, attrs, box=box, title=title)
    for i, line in enumerate(lines):
        color = line.color or PALETTE[i % len(PALETTE)]
        for run in finite_runs(line.xs, line.ys):
            pts = " ".join(f"{x(a):.1f},{y(min(max(b, y_lo), y_hi)):.1f}" for a, b in run)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{line.width}" '
                       f'stroke-opacity="{line.opacity}"><title>{escape(line.label)}</title></polyline>')
    for i, m in enumerate(markers):
        if not math.isfinite(m.x) or (x.log and m.x <= 0):
            continue
        px = x(m.x)
        near_right = px > box.x1 - 120  # the label goes left of the line instead of off the chart
        tx, anchor = (px - 4, "end") if near_right else (px + 4, "start")
        out.append(f'<line x1="{px:.1f}" y1="{box.y0}" x2="{px:.1f}" y2="{box.y1}" stroke="{m.color}" '
                   f'stroke-dasharray="4 3"><title>{escape(m.label)}</title></line>'
                   f'<text x="{tx:.1f}" y="{box.y0 + 14 + 14 * i}" text-anchor="{anchor}" fill="{m.color}">'
                   f"{escape(m.label)}</text>")
    if legend == "svg":
        out += _svg_legend(lines, box)
    out.append("</svg>")
    svg = "\n".join(out)
    if legend != "html":
        return svg
    items = "".join(f'<span class="item"><span class="swatch" style="border-color:'
                    f'{line.color or PALETTE[i % len(PALETTE)]}"></span>{escape(line.label)}</span>'
                    for i, line in enumerate(lines))
    return f'<div class="legend">{items}</div>' + svg


def _svg_legend(lines: Sequence[Line], box: Box) -> list[str]:
    """A legend in the plot's bottom-right corner, one row per line."""
    out = []
    first_y = box.y1 - 8 - 14 * (len(lines) - 1)
    for i, line in enumerate(lines):
        ly, color = first_y + 14 * i, line.color or PALETTE[i % len(PALETTE)]
        out.append(f'<line x1="{box.x1 - 150}" y1="{ly - 4}" x2="{box.x1 - 130}" y2="{ly - 4}" stroke="{color}" '
                   f'stroke-width="{line.width}" stroke-opacity="{line.opacity}"/>'
                   f'<text x="{box.x1 - 124}" y="{ly}">{escape(line.label)}</text>')
    return out
