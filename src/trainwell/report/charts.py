"""Charts as SVG text drawn in Python: the one chart renderer of every trainwell page (run
report, diagnose, LR finder, tuning and benchmark reports).

Each chart is a complete ``<svg>`` element (with ``xmlns``, ``width`` and ``height``): it
inlines into a page or saves as a ``.svg`` file that any viewer opens, needs no script and
no font file, and its content can be tested as text. Hover text is an SVG ``<title>``;
every label is escaped. Written by hand, not with a plotting library: matplotlib is no
dependency of trainwell and embeds its glyphs (tens of kilobytes per chart), and a
JavaScript library would need a script in every page.

What a page's script may switch is drawn here too, so that the script only toggles and
reads: ``line_chart(toggle_log_y=True)`` draws the linear and the log y scale as two
groups (``<g class="yscale" data-scale=...>``, the second hidden); lines with
``role="smooth"`` are overlays that the stylesheet hides when the ``<svg>`` has the class
``raw-only`` (the ``role="raw"`` lines under them then show at full strength); and
``hover=True`` writes each line's values as data attributes plus a hidden crosshair line,
for a tooltip (``<g class="hover" data-label data-x data-y>``; a histogram's frames share
the ``data-x`` of its ``<svg>``). Without a script the chart shows its first scale, smoothed.

Pieces: the frame (``Box``, ``Scale``, ``value_range``, ``frame``: report/axes.py, imported
here so that a page needs one import), ``line_chart`` (lines, vertical markers, horizontal
reference lines, flags, a legend) and ``sparkline`` (a table cell's bare line); charts of
binned counts (a histogram per step, a heat map) are in report/binned.py.
A page with its own marks (the study's scatter of trials) draws them between ``frame``
and ``"</svg>"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html import escape

from trainwell.report.axes import (
    BOX,
    Box,
    Scale,
    axis_labels,
    frame,
    opening,
    value_range,
    x_axis,
    y_axis,
)
from trainwell.report.series import downsample_indices

__all__ = ["BOX", "PALETTE", "Box", "Flag", "HLine", "Line", "Marker", "Scale", "frame", "line_chart", "sparkline",
           "value_range"]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#6b6b6b")
"""Okabe-Ito colours (told apart with every common colour-vision deficiency), then grey."""

SPARK_POINTS = 120
"""Points per sparkline: a 160-pixel cell cannot show more."""

RAW_UNDER_SMOOTH = 0.3
"""Opacity of a ``role="raw"`` line while its smoothed overlay shows: the noise stays
visible as a band, the trend reads from the overlay."""


@dataclass(frozen=True)
class Line:
    """One series: ``ys`` over ``xs``; a non-finite y breaks the line. ``color`` "" takes the
    palette colour of the line's position.

    ``dash`` is an SVG dash pattern ("6 4"; "" solid). ``step`` draws a staircase (the value
    holds until the next point: a schedule, a counter). ``dots`` marks each point (sparse
    curves such as evaluations read better with them). ``role`` "smooth" makes the line an
    overlay a page may hide, "raw" the noisy line under one (drawn faint while the overlay
    shows). ``legend`` False keeps it out of the legend, ``hover`` False out of the
    crosshair's read-out (a smoothed or abandoned stretch)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = ""
    width: float = 1.5
    opacity: float = 1.0
    dash: str = ""
    step: bool = False
    dots: bool = False
    role: str = ""
    legend: bool = True
    hover: bool = True


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` (dashed by ``dash``, "" solid) labelled at the top of the
    plot; ``title`` is its hover text (default: the label). An empty label writes no text."""

    x: float
    color: str
    label: str
    title: str = ""
    dash: str = "4 3"
    width: float = 1.0


@dataclass(frozen=True)
class HLine:
    """A horizontal reference line at ``y``, labelled at the plot's right end (the value
    that gives a gauge its meaning: 0 for alpha, 1 for the gradient tests)."""

    y: float
    label: str = ""
    color: str = "#666"
    dash: str = "2 3"


@dataclass(frozen=True)
class Flag:
    """A small downward triangle at ``x`` on the plot's top edge, ``title`` on hover: a value
    a line cannot show (a NaN or an infinity)."""

    x: float
    title: str
    color: str = "#d00000"


def finite_runs(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    """The stretches of (x, y) with a finite y, two points or more (a line needs two)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for a, b in zip(xs, ys, strict=False):
        if math.isfinite(b):
            runs[-1].append((a, b))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) >= 2]


def _color(line: Line, i: int) -> str:
    return line.color or PALETTE[i % len(PALETTE)]


def _shown(line: Line, log: bool) -> list[float]:
    """The line's y values as drawn: on a log scale a value <= 0 has no place (a gap)."""
    return [v if v > 0 else math.nan for v in line.ys] if log else list(line.ys)


def _polyline(pts: list[tuple[float, float]], step: bool) -> str:
    """SVG points of a run; a staircase holds each value until the next x. Points that add
    nothing at a tenth of a pixel are left out: a repeat, and the middle of a horizontal or
    vertical stretch (a flat counter or a staircase logged every step is mostly that)."""
    if step:
        pts = [p for a, b in zip(pts, pts[1:], strict=False) for p in (a, (b[0], a[1]))] + pts[-1:]
    kept: list[tuple[float, float]] = []
    for a, b in pts:
        p = (round(a, 1), round(b, 1))
        if kept and p == kept[-1]:
            continue
        if len(kept) >= 2 and (_between(kept[-2], kept[-1], p, 0) or _between(kept[-2], kept[-1], p, 1)):
            kept[-1] = p
        else:
            kept.append(p)
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in kept)


def _between(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], axis: int) -> bool:
    """Whether ``b`` lies on the straight stretch from ``a`` to ``c``, all three sharing their
    ``axis`` coordinate (0: one pixel column, 1: one row): then it draws nothing of its own.
    A point that turns back (a spike within one pixel column) is not between."""
    other = 1 - axis
    return a[axis] == b[axis] == c[axis] and min(a[other], c[other]) <= b[other] <= max(a[other], c[other])


def _line_marks(line: Line, color: str, x: Scale, y: Scale, ylim: tuple[float, float] | None,
                smoothed: bool) -> list[str]:
    """The polylines (one per finite run) and dots of one line on one y scale."""
    y_lo, y_hi = (min(ylim), max(ylim)) if ylim else (-math.inf, math.inf)
    ys = _shown(line, y.log)
    opacity = line.opacity * (RAW_UNDER_SMOOTH if smoothed and line.role == "raw" else 1.0)
    cls = f' class="{line.role}"' if line.role else ""
    dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
    out = []
    for run in finite_runs(line.xs, ys):
        pts = [(x(a), y(min(max(b, y_lo), y_hi))) for a, b in run]
        out.append(f'<polyline{cls} points="{_polyline(pts, line.step)}" fill="none" stroke="{color}" '
                   f'stroke-width="{line.width}" stroke-opacity="{opacity}"{dash}>'
                   f"<title>{escape(line.label)}</title></polyline>")
    if line.dots:  # zero-length strokes with round caps: a dot each, ~14 bytes instead of a <circle>'s 45
        d = "".join(f"M{x(a):.1f} {y(min(max(b, y_lo), y_hi)):.1f}h0"
                    for a, b in zip(line.xs, ys, strict=False) if math.isfinite(b))
        if d:
            out.append(f'<path class="dots{" " + line.role if line.role else ""}" d="{d}" stroke="{color}" '
                       'stroke-width="5.2" stroke-linecap="round"/>')
    return out


def _hline_marks(hlines: Sequence[HLine], y: Scale, box: Box) -> list[str]:
    """Reference lines with their labels; one a log scale cannot show (<= 0) is left out."""
    out = []
    for h in hlines:
        if not math.isfinite(h.y) or (y.log and h.y <= 0):
            continue
        py = y(h.y)
        out.append(f'<line class="hline" x1="{box.x0}" y1="{py:.1f}" x2="{box.x1}" y2="{py:.1f}" '
                   f'stroke="{h.color}" stroke-dasharray="{h.dash}"/>')
        if h.label:
            out.append(f'<text class="reflabel" x="{box.x1 - 4}" y="{py - 4:.1f}" text-anchor="end" '
                       f'fill="#555">{escape(h.label)}</text>')
    return out


def _plot_layer(lines: Sequence[Line], x: Scale, y: Scale, ylim: tuple[float, float] | None,
                hlines: Sequence[HLine], box: Box) -> list[str]:
    """What depends on the y scale: reference lines, then the lines."""
    smoothed = any(line.role == "smooth" for line in lines)
    out = _hline_marks(hlines, y, box)
    for i, line in enumerate(lines):
        out += _line_marks(line, _color(line, i), x, y, ylim, smoothed)
    return out


def _marker_marks(markers: Sequence[Marker], x: Scale, box: Box) -> list[str]:
    """Vertical markers; two at one pixel sit side by side, labels stack down the top."""
    out, taken, labelled = [], {}, 0
    for m in markers:
        if not math.isfinite(m.x) or (x.log and m.x <= 0):
            continue
        at = round(x(m.x), 1)
        px = at + 2.5 * taken.get(at, 0)
        taken[at] = taken.get(at, 0) + 1
        style = (f' stroke-width="{m.width}"' if m.width != 1.0 else "") + (f' stroke-dasharray="{m.dash}"' if m.dash else "")
        out.append(f'<line x1="{px:.1f}" y1="{box.y0}" x2="{px:.1f}" y2="{box.y1}" stroke="{m.color}"{style}>'
                   f"<title>{escape(m.title or m.label)}</title></line>")
        if m.label:
            near_right = px > box.x1 - 120  # the label goes left of the line instead of off the chart
            tx, anchor = (px - 4, "end") if near_right else (px + 4, "start")
            out.append(f'<text x="{tx:.1f}" y="{box.y0 + 14 + 14 * labelled}" text-anchor="{anchor}" '
                       f'fill="{m.color}">{escape(m.label)}</text>')
            labelled += 1
    return out


def _flag_marks(flags: Sequence[Flag], x: Scale, box: Box) -> list[str]:
    """Triangles on the plot's top edge, drawn over both y scales (they depend on x only)."""
    out = []
    for f in flags:
        if not math.isfinite(f.x) or (x.log and f.x <= 0):
            continue
        px, top = x(f.x), box.y0 + 1
        out.append(f'<path class="flag" d="M{px - 5:.1f} {top}L{px + 5:.1f} {top}L{px:.1f} {top + 8}Z" '
                   f'fill="{f.color}"><title>{escape(f.title)}</title></path>')
    return out


def num(v: float) -> str:
    """A value for a data attribute: 4 significant digits, ``nan`` when not finite."""
    return f"{v:.4g}" if math.isfinite(v) else "nan"


def hover_marks(lines: Sequence[Line], box: Box) -> list[str]:
    """Each line's values as data attributes (``data-x`` steps, ``data-y`` values) and a
    hidden crosshair line, for a page's script to read and move."""
    out = [f'<line class="crosshair" x1="{box.x0}" y1="{box.y0}" x2="{box.x0}" y2="{box.y1}" '
           'stroke="#555" stroke-width="0.8" visibility="hidden" pointer-events="none"/>']
    for line in lines:
        if line.hover:
            xs = " ".join(f"{v:.10g}" for v in line.xs)
            ys = " ".join(num(v) for v in line.ys)
            out.append(f'<g class="hover" data-label="{escape(line.label)}" data-x="{xs}" data-y="{ys}"/>')
    return out


def _y_scale(lines: Sequence[Line], hlines: Sequence[HLine], ylim: tuple[float, float] | None,
             log: bool, box: Box) -> Scale:
    """The y scale spans the finite values and the reference lines (with a margin), or ``ylim``."""
    if ylim and not log:
        return Scale(*ylim, box.y1, box.y0)
    ys = [v for line in lines for v in line.ys if math.isfinite(v)] + [h.y for h in hlines]
    return Scale(*value_range(ys, log=log), box.y1, box.y0, log=log)


def line_chart(lines: Sequence[Line], *, xlabel: str = "", ylabel: str = "", log_x: bool = False,
               ylim: tuple[float, float] | None = None, markers: Sequence[Marker] = (), title: str = "",
               legend: str = "html", attrs: str = "", box: Box = BOX, xlim: tuple[float, float] | None = None,
               log_y: bool = False, toggle_log_y: bool = False, hlines: Sequence[HLine] = (),
               flags: Sequence[Flag] = (), hover: bool = False) -> str:
    """Lines on shared axes. x spans the data exactly, or ``xlim``; y spans the finite values
    with a margin, or ``ylim`` (values beyond it are drawn at its edge). ``log_y`` puts y on
    log10; ``toggle_log_y`` draws both y scales (``log_y``'s first, the other hidden) for a
    page's script to switch. ``hlines`` are reference lines, ``flags`` marks on the top
    edge, ``hover`` writes the values for a crosshair (see the module docstring).
    ``legend`` "html" puts a ``<div class="legend">`` before the SVG (a page styles it),
    "svg" draws it inside (a standalone file), "" leaves it out."""
    if title:
        box = replace(box, top=box.top + 22)
    xs = [v for line in lines for v in line.xs]
    x = Scale(*(xlim or value_range(xs, 0.0, log=log_x)), box.x0, box.x1, log=log_x)
    if hover:
        attrs += (f' data-xmap="{box.x0} {box.x1} {x.lo:.10g} {x.hi:.10g}{" log" if x.log else ""}"'
                  f' data-xname="{escape(xlabel)}"')
    scales = [log_y, not log_y] if toggle_log_y else [log_y]
    out = [*opening(attrs, box, title), *x_axis(x, None, box)]
    for k, log in enumerate(scales):
        y = _y_scale(lines, hlines, ylim, log, box)
        layer = y_axis(y, box) + _plot_layer(lines, x, y, None if y.log else ylim, hlines, box)
        if toggle_log_y:
            hidden = ' display="none"' if k else ""
            layer = [f'<g class="yscale" data-scale="{"log" if y.log else "linear"}"{hidden}>', *layer, "</g>"]
        out += layer
    out.append(axis_labels(xlabel, ylabel, box))
    out += _marker_marks(markers, x, box) + _flag_marks(flags, x, box)
    if hover:
        out += hover_marks(lines, box)
    if legend == "svg":
        out += _svg_legend(lines, box)
    out.append("</svg>")
    svg = "\n".join(out)
    return svg if legend != "html" else _html_legend(lines) + svg


def _html_legend(lines: Sequence[Line]) -> str:
    """A swatch (dashed for a dashed line) and the label of each line meant for the legend."""
    items = "".join(f'<span class="item"><span class="swatch{" dash" if line.dash else ""}" style="border-color:'
                    f'{_color(line, i)}"></span>{escape(line.label)}</span>'
                    for i, line in enumerate(lines) if line.legend)
    return f'<div class="legend">{items}</div>'


def _svg_legend(lines: Sequence[Line], box: Box) -> list[str]:
    """A legend in the plot's bottom-right corner, one row per line."""
    out = []
    shown = [(i, line) for i, line in enumerate(lines) if line.legend]
    first_y = box.y1 - 8 - 14 * (len(shown) - 1)
    for row, (i, line) in enumerate(shown):
        ly, color = first_y + 14 * row, _color(line, i)
        dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
        out.append(f'<line x1="{box.x1 - 150}" y1="{ly - 4}" x2="{box.x1 - 130}" y2="{ly - 4}" stroke="{color}" '
                   f'stroke-width="{line.width}" stroke-opacity="{line.opacity}"{dash}/>'
                   f'<text x="{box.x1 - 124}" y="{ly}">{escape(line.label)}</text>')
    return out


def sparkline(xs: Sequence[float], ys: Sequence[float], width: int = 120, height: int = 30) -> str:
    """A tiny inline SVG line (non-finite values left out; they are counted in the cell)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not pts:
        return f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"></svg>'
    keep = downsample_indices([y for _, y in pts], SPARK_POINTS)
    pts = [pts[i] for i in keep]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (width - 4) / (x1 - x0) if x1 > x0 else 0.0
    sy = (height - 4) / (y1 - y0) if y1 > y0 else 0.0
    coords = " ".join(
        f"{2 + (x - x0) * sx:.1f},{height - 2 - ((y - y0) * sy if sy else (height - 4) / 2):.1f}" for x, y in pts
    )
    return (
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f'<polyline fill="none" stroke="#0072B2" stroke-width="1.3" points="{coords}"/></svg>'
    )
