"""The run report's panels drawn as SVG by ``report.charts`` (the renderer of every page),
with the controls that the page's script (``static/report.js``) wires up: the log/linear
and smoothing buttons, the crosshair, the histogram's step slider.

A series becomes up to three lines: the solid stretches (the hover read-out reads them),
the stretches a rollback abandoned (grey, dashed) and the smoothed trend over the faint raw
line. Markers are the logbook's events, flags its non-finite values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from html import escape
from typing import Any

from trainwell.report.binned import heat_map, histogram_chart
from trainwell.report.charts import (
    Box,
    Flag,
    Line,
    Marker,
    line_chart,
)
from trainwell.report.hists import Hist1d, Hist2d
from trainwell.report.panels import EVENT_COLORS, Panel, Series
from trainwell.report.series import Segment

CHART_BOX = Box(width=560, height=250, left=64, right=14, top=12, bottom=38)
"""A panel's chart in a two-column grid; it scales to the panel's width (``svg.chart.fit``),
its fonts with it, so the box is about the panel's width on a laptop screen."""
NARROW_BOX = replace(CHART_BOX, width=400)
"""A panel's chart in a three-column grid (the Cockpit columns): text stays readable."""
SMALL_BOX = Box(width=250, height=150, left=52, right=10, top=8, bottom=34)
"""A per-layer histogram in the small multiples."""
HEAT_BOX = Box(width=560, height=280, left=64, right=14, top=12, bottom=38)
FADED = "#aaaaaa"
"""Stretches a rollback abandoned (logged, then redone) are grey and dashed."""
DASH = "6 4"


def _values(segs: Sequence[Segment]) -> tuple[list[float], list[float]]:
    """The segments joined into one (x, y) list, a missing value as NaN (a gap)."""
    xs = [x for s in segs for x in s.x]
    ys = [math.nan if y is None else y for s in segs for y in s.y]
    return xs, ys


def series_lines(s: Series) -> list[Line]:
    """The abandoned stretches, the solid line, then its smoothed trend."""
    color = s.color or ""
    out = [Line(f"{s.label} (abandoned by a rollback)", *_values([g]), FADED, 1.2, dash=DASH, step=s.step,
                legend=False, hover=False) for g in s.segs if g.faded]
    solid = [g for g in s.segs if not g.faded]
    out.append(Line(s.label, *_values(solid), color, 1.7, dash=DASH if s.dash else "", step=s.step,
                    dots=s.dots, role="raw" if s.smooth else ""))
    if s.smooth:
        out.append(Line(f"{s.label} (smoothed)", *_values(s.smooth), color, 2.0, role="smooth",
                        legend=False, hover=False))
    return out


def event_markers(events: Sequence[Mapping[str, Any]], labels: bool) -> list[Marker]:
    """A vertical line per logbook event, its message on hover; a restart is dashed."""
    out = []
    for e in events:
        times = f" (x{e['count']})" if e["count"] > 1 else ""
        out.append(Marker(e["x"], EVENT_COLORS.get(e["kind"], "#888888"), e["label"] if labels else "",
                          title=f"{e['kind']} at step {e['x']:g}{times}: {e['message']}",
                          dash="5 3" if e["kind"] == "restart" else "", width=1.2))
    return out


def _tools(p: Panel, toggle: bool) -> str:
    """The panel's buttons, labelled with what shows now (the script relabels them on click)."""
    buttons = []
    if toggle:
        buttons.append(f'<button type="button" data-toggle="scale">{"log y" if p.log else "linear y"}</button>')
    if any(s.smooth for s in p.series):
        buttons.append('<button type="button" data-toggle="smooth">smoothed</button>')
    return f'<div class="tools">{"".join(buttons)}</div>' if buttons else ""


def line_panel(p: Panel, events: Sequence[Mapping[str, Any]], xrange: tuple[float, float],
               box: Box = CHART_BOX) -> str:
    """A line chart panel: title, note, buttons, legend and the chart."""
    lines = [line for s in p.series for line in series_lines(s)]
    flags = [Flag(x, f"{s.label} = {what} at step {x:g}") for s in p.series for x, what in s.bad]
    positive = any(v > 0 for line in lines for v in line.ys if math.isfinite(v))
    toggle = p.ylim is None and positive  # a log scale needs positive values; a fixed range stays
    chart = line_chart(lines, xlabel="step", ylabel=p.ylabel, xlim=xrange, ylim=p.ylim, log_y=p.log and toggle,
                       toggle_log_y=toggle, hlines=p.hlines, flags=flags, hover=True, box=box,
                       markers=event_markers([e for e in events if xrange[0] <= e["x"] <= xrange[1]], p.labels)
                       if p.events else ())
    return _box(p.id, p.title, p.note, _tools(p, toggle) + chart)


def hist1d_panel(p: Hist1d, small: bool = False, box: Box = CHART_BOX) -> str:
    """The bars at the last step, with a slider over the steps when there are several."""
    names = [f"step {s}" for s in p.steps]
    chart = histogram_chart(p.edges, p.counts, names, xlabel=p.axis, ylabel="count" if small else "count (log scale)",
                            box=SMALL_BOX if small else box)
    slider = ""
    if len(p.steps) > 1:
        last = len(p.steps) - 1
        slider = (f'<div class="slider"><input type="range" min="0" max="{last}" value="{last}" '
                  f'aria-label="step"><span>{escape(names[-1])}</span></div>')
    return _box(p.id, p.title, p.note, slider + chart)


def hist2d_panel(p: Hist2d, box: Box = HEAT_BOX) -> str:
    """The 2d histogram as a heat map (no controls: one step)."""
    return _box(p.id, p.title, p.note, heat_map(p.xedges, p.yedges, p.counts, xlabel=p.xaxis, ylabel=p.yaxis, box=box))


def panel_html(p: Panel | Hist1d | Hist2d, events: Sequence[Mapping[str, Any]], xrange: tuple[float, float],
               small: bool = False, narrow: bool = False) -> str:
    """Any panel of the report, by its kind; ``narrow`` for a three-column grid."""
    box = NARROW_BOX if narrow else CHART_BOX
    if isinstance(p, Hist1d):
        return hist1d_panel(p, small, box)
    if isinstance(p, Hist2d):
        return hist2d_panel(p, replace(HEAT_BOX, width=box.width))
    return line_panel(p, events, xrange, box)


def _box(pid: str, title: str, note: str, inner: str) -> str:
    note_html = f'<div class="note">{escape(note)}</div>' if note else ""
    return (f'<div class="panel" id="{escape(pid)}"><div class="ptitle">{escape(title)}</div>'
            f"{note_html}{inner}</div>")
