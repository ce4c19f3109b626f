"""A small self-contained SVG line plot (log x axis), written by hand because matplotlib is
not a dependency: the LR range test's plot must open anywhere without a script or a font file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 36, 48


@dataclass(frozen=True)
class Series:
    ys: Sequence[float]
    color: str
    label: str
    width: float = 1.5
    opacity: float = 1.0


@dataclass(frozen=True)
class Marker:
    x: float
    color: str
    label: str


def log_plot(
    xs: Sequence[float],
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
) -> str:
    """Lines of ``series`` over positive ``xs`` on a log10 x axis; non-finite points break the
    line; values outside ``ylim`` are clamped to its edges."""
    lx = [math.log10(x) for x in xs]
    x0, x1 = min(lx), max(lx)
    if x1 == x0:
        x1 = x0 + 1
    finite = [y for s in series for y in s.ys if math.isfinite(y)]
    y0, y1 = ylim if ylim is not None else (min(finite, default=0.0), max(finite, default=1.0))
    if y1 <= y0:
        y1 = y0 + 1
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(v: float) -> float:
        return LEFT + (v - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        v = min(max(v, y0), y1)
        return TOP + (1 - (v - y0) / (y1 - y0)) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>',
    ]
    for d in range(math.ceil(x0), math.floor(x1) + 1):  # one tick per decade
        x = px(d)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 14}" text-anchor="middle">1e{d}</text>')
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{LEFT - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + ph / 2})">{escape(ylabel)}</text>')
    for s in series:
        for run in _finite_runs(lx, s.ys):
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{s.color}" '
                       f'stroke-width="{s.width}" stroke-opacity="{s.opacity}"/>')
    for i, m in enumerate(markers):
        if m.x <= 0 or not math.isfinite(m.x):
            continue
        x = px(math.log10(m.x))
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" stroke="{m.color}" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x + 4:.1f}" y="{TOP + 14 + 14 * i}" fill="{m.color}">{escape(m.label)}</text>')
    legend_y = TOP + ph - 8 - 14 * (len(series) - 1)
    for i, s in enumerate(series):
        y = legend_y + 14 * i
        out.append(f'<line x1="{LEFT + pw - 150}" y1="{y - 4}" x2="{LEFT + pw - 130}" y2="{y - 4}" '
                   f'stroke="{s.color}" stroke-width="{s.width}" stroke-opacity="{s.opacity}"/>')
        out.append(f'<text x="{LEFT + pw - 124}" y="{y}">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _finite_runs(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=False):
        if math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) >= 2]
