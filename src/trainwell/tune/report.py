"""``study.html``: one self-contained page for a study, from its ``StudyView`` and ``Analysis``.

The charts are inline SVG from ``report.charts`` (no script, no fetch: the page opens
offline and its content can be tested as text); the stylesheet is the run report's. Hover text is an
SVG ``<title>``. Every string from the study is escaped: a reason is text, never markup.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from trainwell.report.assets import html_page
from trainwell.report.charts import BOX, PALETTE, Line, Scale, frame, line_chart, value_range
from trainwell.report.series import collect, downsample_indices
from trainwell.sinks import METRICS_FILE, read_jsonl
from trainwell.tune.analysis import Analysis, AxisPoint, Isolation
from trainwell.tune.checks import fmt
from trainwell.tune.records import Dimension, StudyView, TrialRecord
from trainwell.tune.show import ordered

REPORT_FILE = "study.html"
W, H = BOX.width, BOX.height
L, R, T, B = BOX.left, BOX.right, BOX.top, BOX.bottom
BAND = 22
"""Pixels of the band (on the worse side of the y axis) holding trials without a value."""
CURVE_POINTS = 400
"""Points per training curve: a 500-pixel chart cannot show more."""
BAD = "#D55E00"
EXTRA_STYLE = """
.bars .row { display: flex; align-items: center; gap: 8px; font-size: 13px; margin: 3px 0; }
.bars .name { width: 220px; text-align: right; font-family: ui-monospace, Menlo, monospace; }
.bars .bar { height: 12px; background: #0072B2; border-radius: 2px; }
"""


def _y_scale(view: StudyView, values: Sequence[float | None]) -> tuple[Scale, float]:
    """The objective's scale, leaving a band on the worse side; returns it and the band's y."""
    lo, hi = value_range([v for v in values if v is not None])
    if view.higher_is_better:  # worse is lower: the band is at the bottom
        return Scale(lo, hi, H - B - BAND, T), H - B - BAND / 2
    return Scale(lo, hi, H - B, T + BAND), T + BAND / 2


def _marks(pts: list[tuple[float, float | None, str, str]], y: Scale, band_y: float) -> list[str]:
    """(x pixel, objective or None, state, hover text) as dots, or crosses in the band."""
    out = []
    for px, obj, state, tip in pts:
        title = f"<title>{escape(tip)}</title>"
        if obj is None:
            d = f"M{px - 4:.1f},{band_y - 4:.1f}l8,8m0,-8l-8,8"
            out.append(f'<path class="pt {escape(state)}" d="{d}" stroke="{BAD}" stroke-width="2" fill="none">{title}</path>')
        else:
            fill = PALETTE[0] if state == "complete" else "none"
            out.append(f'<circle class="pt {escape(state)}" cx="{px:.1f}" cy="{y(obj):.1f}" r="4" '
                       f'fill="{fill}" fill-opacity="0.75" stroke="{PALETTE[0]}">{title}</circle>')
    return out


def _band(band_y: float, n: int) -> str:
    """The tinted band of trials without a value, labelled on the y axis."""
    if not n:
        return ""
    return (f'<rect x="{L}" y="{band_y - BAND / 2:.1f}" width="{W - L - R}" height="{BAND}" fill="{BAD}" '
            f'fill-opacity="0.08"/><text x="{L - 5}" y="{band_y + 4:.1f}" text-anchor="end" '
            f'fill="{BAD}">no value<title>{n} without a value</title></text>')


def _jitter(n: int) -> float:
    """A fixed spread within a category (golden-ratio steps), so points at one choice do not
    hide each other."""
    return ((n * 0.618034) % 1 - 0.5) * 0.4


def axis_svg(view: StudyView, dim: Dimension, points: list[AxisPoint], best: int | None = None) -> str:
    """Objective against one hyperparameter, every finished trial shown (the ``best`` trial
    ringed)."""
    y, band_y = _y_scale(view, [p.objective for p in points])
    name = f"1 - {dim.key}" if dim.kind == "one_minus_log" else dim.key
    xticks = None
    if dim.kind == "choice":
        cats = list(dict.fromkeys(repr(c) for c in [*dim.choices, *(p.value for p in points)]))
        x = Scale(0, len(cats), L, W - R)
        pos: Callable[[Any, int], float] = lambda v, n: x(cats.index(repr(v)) + 0.5 + _jitter(n))  # noqa: E731
        xticks = [(i + 0.5, c.strip("'")) for i, c in enumerate(cats)]
    else:
        edges = [float(v) for v in (dim.low, dim.high) if v is not None]
        lo, hi = value_range(edges + [float(p.value) for p in points], 0.04, dim.log_axis)
        x = Scale(lo, hi, L, W - R, log=dim.log_axis)
        pos = lambda v, n: x(float(v))  # noqa: E731
    out = frame(x, y, name + (" (log)" if x.log else ""), view.metric, f'data-dim="{escape(dim.key)}"', xticks)
    if dim.kind != "choice":
        out += [f'<line x1="{x(e):.1f}" y1="{T}" x2="{x(e):.1f}" y2="{H - B}" stroke="#999" '
                f'stroke-dasharray="4 3"><title>edge of the searched range: {escape(fmt(e))}</title></line>'
                for e in edges]
    pts = [(pos(p.value, p.number), p.objective, p.state,
            f"trial {p.number} ({p.state}): {name} = {fmt(p.value)}, {view.metric} = "
            + (fmt(p.objective) if p.objective is not None else (p.reason or "no reason recorded")))
           for p in points]
    out += [_band(band_y, sum(p.objective is None for p in points)), *_marks(pts, y, band_y)]
    out += [f'<circle class="best" cx="{px:.1f}" cy="{y(obj):.1f}" r="7" fill="none" stroke="#000">'
            f"<title>the best trial</title></circle>"
            for (px, obj, _, _), p in zip(pts, points, strict=True) if p.number == best and obj is not None]
    out.append("</svg>")
    return "\n".join(out)


def isolation_svg(view: StudyView, iso: Isolation) -> str:
    """The best objective per value (or bucket) of a scientific key."""
    y, band_y = _y_scale(view, [r.objective for r in iso.rows])
    x = Scale(0, max(1, len(iso.rows)), L, W - R)
    xticks = [(i + 0.5, f"{r.value[0]:.2g}-{r.value[1]:.2g}" if iso.bucketed and isinstance(r.value, tuple)
               else r.label) for i, r in enumerate(iso.rows)]
    out = frame(x, y, iso.key + (" (buckets)" if iso.bucketed else ""), f"best {view.metric}",
                 f'data-scientific="{escape(iso.key)}"', xticks)
    line = [f"{x(i + 0.5):.1f},{y(r.objective):.1f}" for i, r in enumerate(iso.rows) if r.objective is not None]
    if len(line) > 1:
        out.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{PALETTE[0]}" stroke-opacity="0.5"/>')
    pts = [(x(i + 0.5), r.objective, "complete" if r.best else "empty",
            f"{iso.key} = {r.label}: " + (f"best trial {r.best.number}, {view.metric} = {fmt(r.objective)}"
                                          if r.best else "no complete trial") + f" ({r.n_complete} of {r.n} complete)")
           for i, r in enumerate(iso.rows)]
    out.append(_band(band_y, sum(r.best is None for r in iso.rows)))
    return "\n".join(out + _marks(pts, y, band_y) + ["</svg>"])


# --- training curves ------------------------------------------------------------------------

def _run_dir(view: StudyView, t: TrialRecord) -> Path | None:
    if not t.run_dir:
        return None
    p = Path(t.run_dir)
    return p if p.is_absolute() else view.study_dir / p


def _metric_rows(view: StudyView, t: TrialRecord) -> tuple[list[dict[str, Any]], str | None]:
    """The trial's metric rows, or [] and why there are none."""
    d = _run_dir(view, t)
    if d is None:
        return [], f"trial {t.number}: no run directory recorded"
    path = d / METRICS_FILE
    if not path.is_file():
        return [], f"trial {t.number}: no {METRICS_FILE} in {d}"
    try:
        rows = [r for r in read_jsonl(path) if isinstance(r.get("step"), int | float)]
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return [], f"trial {t.number}: {path} could not be read ({type(e).__name__})"
    return rows, None if rows else f"trial {t.number}: no metric rows in {path}"


def read_curves(view: StudyView, trials: list[TrialRecord], keys: list[str]) -> tuple[
        dict[str, list[tuple[int, list[float], list[float]]]], list[str]]:
    """{key: [(trial number, steps, values)]} from each trial's metrics.jsonl, and a note for
    every trial without one (missing, unreadable or empty: its curve is left out)."""
    curves: dict[str, list[tuple[int, list[float], list[float]]]] = {k: [] for k in keys}
    notes = []
    for t in trials:
        rows, note = _metric_rows(view, t)
        if note:
            notes.append(note)
        for k in keys:
            by_step = dict(zip(*collect(rows, k), strict=True))  # a step logged again wins
            xs = sorted(by_step)
            ys = [by_step[s] for s in xs]
            if xs:
                idx = downsample_indices(ys, CURVE_POINTS)
                curves[k].append((t.number, [xs[i] for i in idx], [ys[i] for i in idx]))
    return curves, notes


def curves_svg(key: str, curves: list[tuple[int | str, list[float], list[float]]], xlabel: str = "step",
               log_x: bool = False) -> str:
    """Lines of ``key`` against ``xlabel``, one per (label, xs, ys); an int label is a trial."""
    return line_chart([Line(_label(name), xs, ys) for name, xs, ys in curves], xlabel=xlabel, ylabel=key,
                      log_x=log_x, attrs=f'data-curve="{escape(key)}"')


def _label(name: int | str) -> str:
    return f"trial {name}" if isinstance(name, int) else name


# --- page -----------------------------------------------------------------------------------

def _panel(title: str, body: str, note: str = "") -> str:
    note_html = f'<div class="note">{escape(note)}</div>' if note else ""
    return f'<div class="panel"><div class="ptitle">{escape(title)}</div>{note_html}{body}</div>'


def _trials_table(view: StudyView, trials: list[TrialRecord], best: TrialRecord | None) -> str:
    keys = [d.key for d in view.dims]
    head = "".join(f"<th>{escape(h)}</th>" for h in ["#", "state", view.metric, "best step", *keys,
                                                       "interventions", "reason"])
    rows = []
    for t in trials:
        step = f"{t.best_step} of {t.steps}" if t.best_step is not None and t.steps else "-"
        tag = " (best)" if t is best else f" (rerun of {t.rerun_of}, seed {t.seed})" if t.rerun_of is not None else ""
        cells = [f"{t.number}{tag}", t.state,
                 fmt(t.value) if t.value is not None else "-", step,
                 *(fmt(t.params[k]) if k in t.params else "-" for k in keys),
                 " ".join(f"{k}={v}" for k, v in t.interventions.items() if v) or "-", t.reason or ""]
        cls = ' class="badnum"' if t.state in ("infeasible", "failed") else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f'<div class="scroll-x"><table class="logbook"><tr>{head}</tr>{"".join(rows)}</table></div>'


def _head(view: StudyView, analysis: Analysis) -> str:
    c = analysis.counts
    facts = [("metric", f"{view.metric} ({'higher' if view.higher_is_better else 'lower'} is better)"),
             ("objective", f"{view.objective} value of each trial"), ("sampler", view.sampler),
             ("trials", ", ".join(f"{c[s]} {s}" for s in ("complete", "infeasible", "failed", "pruned", "running")
                                  if c.get(s)) + f" of {view.planned} planned"),
             ("seed reruns", str(c.get("reruns", 0))),
             ("scientific", ", ".join(view.scientific) or "none"),
             ("best", f"trial {analysis.best.number}: {fmt(analysis.best.value)}" if analysis.best else "none yet")]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return (f"<h1>{escape(view.name)}</h1><div class='sub'>study in {escape(str(view.study_dir))}</div>"
            f'<div class="card"><table class="facts">{rows}</table></div>')


def _warnings(analysis: Analysis) -> str:
    if not analysis.warnings:
        return '<p class="ok-text">No warnings: the Playbook checks found nothing.</p>'
    return "".join(f'<div class="finding warn"><div class="sev">check</div><div>{escape(w)}</div></div>'
                   for w in analysis.warnings)


def _importances(analysis: Analysis) -> str:
    if not analysis.importances:
        return f'<p class="muted">{escape(analysis.importance_note or "no importances")}</p>'
    top = max(analysis.importances.values()) or 1.0
    return '<div class="bars">' + "".join(
        f'<div class="row"><span class="name">{escape(k)}</span><span class="bar" '
        f'style="width:{300 * v / top:.0f}px"></span><span>{v:.2f}</span></div>'
        for k, v in analysis.importances.items()) + "</div>"


def _seeds(analysis: Analysis) -> str:
    if not analysis.seed_groups:
        return '<p class="muted">No seed reruns: rerun the best trials to measure the noise between seeds.</p>'
    head = "".join(f"<th>{h}</th>" for h in ("trial", "seeds", "mean", "std", "min", "max"))
    rows = "".join(f"<tr><td>{g.origin}</td><td>{g.n} of {g.n_runs}</td><td>{escape(fmt(g.mean))}</td>"
                   f"<td>{escape(fmt(g.std))}</td><td>{escape(fmt(min(g.values)))}</td>"
                   f"<td>{escape(fmt(max(g.values)))}</td></tr>" for g in analysis.seed_groups)
    ties = "".join(f'<p class="tie {escape(t.verdict)}">{escape(t.sentence)}</p>' for t in analysis.ties)
    return f'<div class="scroll-x"><table class="logbook"><tr>{head}</tr>{rows}</table></div>{ties}'


def render_study(view: StudyView, analysis: Analysis) -> str:
    """The whole page as a string."""
    metric = view.metric
    best = analysis.best.number if analysis.best else None
    curves, notes = read_curves(view, analysis.top, ["train/loss", metric])
    curve_panels = [_panel(k, curves_svg(k, cs)) for k, cs in curves.items() if cs]
    parts = [_head(view, analysis), "<h2>Warnings</h2>" + _warnings(analysis),
             "<h2>Top trials</h2>" + _trials_table(view, analysis.top, analysis.best),
             "<h2>Training curves of the top trials</h2>"
             + (f'<div class="grid2">{"".join(curve_panels)}</div>' if curve_panels
                else '<p class="muted">No curves could be read.</p>')
             + "".join(f'<p class="muted curve-note">{escape(n)}</p>' for n in notes),
             "<h2>Hyperparameter axes</h2><div class='grid2'>" + "".join(
                 _panel(a.dim.key, axis_svg(view, a.dim, a.points, best), "crosses: trials with no value "
                        "(infeasible, failed), in the band on the worse side") for a in analysis.axes) + "</div>",
             "<h2>Isolation</h2>" + (("<div class='grid2'>" + "".join(
                 _panel(i.key, isolation_svg(view, i), "best trial per value, the other parameters "
                        "optimised away") for i in analysis.isolation) + "</div>") if analysis.isolation else
                 '<p class="muted">No scientific keys: name the keys whose effect the study measures in '
                 "tune.scientific (the rest are nuisance parameters, optimised away per value).</p>"),
             "<h2>Importances</h2>" + _importances(analysis),
             "<h2>Seed reruns</h2>" + _seeds(analysis),
             "<h2>All trials</h2>" + _trials_table(view, ordered(view) + view.reruns, analysis.best),
             f'<footer>Generated {datetime.now(UTC).isoformat(timespec="seconds")} by '
             f"<code>trainwell tune</code> from {escape(str(view.study_dir))}.</footer>"]
    return html_page(f"{view.name}: trainwell study", "\n".join(parts), style=EXTRA_STYLE)


def write_study_report(view: StudyView, analysis: Analysis, out: Path) -> Path:
    """Write ``study.html`` into the folder ``out`` (or to ``out`` itself when it ends in
    .html), atomically, and return its path."""
    out = Path(out)
    target = out if out.suffix == ".html" else out / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(render_study(view, analysis), encoding="utf-8")
    os.replace(tmp, target)  # a reader never sees half a page
    return target
