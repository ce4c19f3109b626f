"""``write_report(run_dir)``: one self-contained ``report.html`` for a run directory.

The charts are SVG drawn here by ``report.charts`` (through ``report.draw``), the stylesheet
and the small script that makes them interactive (``static/report.css`` and
``static/report.js``) are inline (through ``assets.html_page``): the page opens from a
laptop, an air-gapped cluster or an e-mail attachment, with nothing fetched at view time,
and shows every chart even with scripts off.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from trainwell.distill.verdict import verdict_html
from trainwell.quantize.report import quantize_html
from trainwell.report.assets import html_page, script
from trainwell.report.draw import panel_html
from trainwell.report.hists import Hist1d, Hist2d, histogram_panels
from trainwell.report.load import RunData, load_run
from trainwell.report.panels import (
    EVENT_COLORS,
    Panel,
    PanelBuilder,
    autopilot_panels,
    cockpit_columns,
    events,
    layer_families,
    noise_panels,
    other_panels,
    training_panels,
    unsupported_modules,
)
from trainwell.report.tables import (
    findings_html,
    header_html,
    layer_table_html,
    logbook_html,
    status_class,
)

REPORT_FILE = "report.html"


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's report (default ``run_dir/report.html``, atomically) and return its path.

    Raises TrainwellError when ``run_dir`` does not exist or has no metrics.jsonl."""
    data = load_run(run_dir)
    target = Path(out) if out is not None else data.run_dir / REPORT_FILE
    text = render_report(data)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)  # a reader never sees half a page
    return target


AnyPanel = Panel | Hist1d | Hist2d


class _Drawer:
    """Draws panels with the run's events and the step range every chart shares."""

    def __init__(self, events: list[dict[str, Any]], xrange: tuple[float, float]) -> None:
        self.events, self.xrange = events, xrange

    def panels(self, panels: list[AnyPanel], small: bool = False, narrow: bool = False) -> str:
        return "".join(panel_html(p, self.events, self.xrange, small, narrow) for p in panels)

    def grid(self, panels: list[AnyPanel], cls: str = "grid2") -> str:
        """The panels in a grid; a three-column grid gets narrower charts (readable text)."""
        return f'<div class="{cls}">{self.panels(panels, narrow=cls == "grid3")}</div>' if panels else ""


def render_report(data: RunData) -> str:
    """The whole page as a string."""
    b = PanelBuilder(data)
    training = training_panels(b)
    autopilot = autopilot_panels(b)
    columns = cockpit_columns(b)
    hist_main, hist_layers = histogram_panels(data.histograms)
    if hist_main:
        grads = next((c for c in columns if c["heading"] == "GRADIENTS"), None)
        if grads is None:
            grads = {"heading": "GRADIENTS", "panels": []}
            columns.insert(min(1, len(columns)), grads)
        grads["panels"].extend(hist_main)
    noise = noise_panels(b)
    other_inst = other_panels(b, "inst/")
    families = layer_families(data)
    system = other_panels(b, "sys/")
    leftover = [p for p in other_panels(b, "") if p]  # keys of groups the report does not know

    panels = training + autopilot + [p for c in columns for p in c["panels"]] + noise + other_inst + system + leftover
    steps = [float(r["step"]) for r in data.rows]
    evs = events(data)
    draw = _Drawer(evs, (min(steps), max(steps)))

    parts = [_head(data), f"<h2>Findings</h2>{findings_html(data)}", f"<h2>Run</h2>{header_html(data)}"]
    parts.append(verdict_html(data.config, data.summary))  # '' unless the run had a teacher
    parts.append(quantize_html(data.run_dir, data.rows))  # '' without outlier readings or quantize.json
    parts.append("<h2>Training curves</h2>" + _marker_key(evs, panels) + draw.grid(training))
    parts.append("<h2>Autopilot</h2>" + draw.grid(autopilot) + "<h3 style='margin-top:12px'>Logbook</h3>" + logbook_html(data.logbook))
    parts.append("<h2>Instruments</h2>")
    if not (columns or noise or other_inst or families or hist_layers):
        parts.append('<p class="muted" id="no-instruments">No instrument measurements in this run '
                     "(set <code>instruments.preset = \"economy\"</code> for the Cockpit view).</p>")
    if columns:
        parts.append('<div class="grid3 cockpit">' + "".join(
            f'<div class="column"><h3>{escape(c["heading"])}</h3>' + draw.panels(c["panels"], narrow=True) + "</div>"
            for c in columns) + "</div>")
    parts.append(draw.grid(noise + other_inst, "grid3"))
    skipped = unsupported_modules(data)
    if skipped:
        parts.append('<p class="muted">The instruments could not see into: ' + escape(", ".join(skipped)) + "</p>")
    if families or hist_layers:
        parts.append("<h3 style='margin-top:14px'>Per layer</h3>" + layer_table_html(families))
        if hist_layers:
            parts.append(f'<details class="layer-hists"><summary>Gradient histograms per layer at the last measured step '
                         f"({len(hist_layers)})</summary>"
                         '<div class="smalls">' + draw.panels(hist_layers, small=True) + "</div></details>")
    if system or leftover:
        parts.append("<h2>System</h2>" + draw.grid(system + leftover, "grid3"))
    parts.append(f'<footer>Generated {datetime.now(UTC).isoformat(timespec="seconds")} by '
                 f"<code>trainwell report</code> from {escape(str(data.run_dir.resolve()))}.</footer>")

    return html_page(f"{data.run_dir.name}: trainwell report", "\n".join(parts), scripts=f"<script>{script()}</script>")


def _marker_key(evs: list[dict[str, Any]], panels: list[AnyPanel]) -> str:
    """One key for the markers every chart shares, instead of a legend entry per chart."""
    items = []
    kinds: dict[str, int] = {}
    for e in evs:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + e["count"]
    for kind, n in kinds.items():
        dash = " dash" if kind == "restart" else ""
        color = EVENT_COLORS.get(kind, "#888888")
        items.append(f'<span><span class="swatch{dash}" style="border-color:{color}"></span>{escape(kind)} ({n})</span>')
    series = [s for p in panels if isinstance(p, Panel) for s in p.series]
    if any(g.faded for s in series for g in s.segs):
        items.append('<span><span class="swatch line"></span>stretch abandoned by a rollback (logged, then redone)</span>')
    if any(s.bad for s in series):
        items.append('<span><span class="tri">&#9660;</span>non-finite value (nan/inf)</span>')
    if not items:
        return ""
    hint = "<span class='muted'>hover a marker for the logbook message</span>" if kinds else ""
    return '<div class="key" id="marker-key"><b>Key:</b>' + "".join(items) + hint + "</div>"


def _head(data: RunData) -> str:
    s = data.summary or {}
    status = str(s.get("status", "no summary"))
    metric = s.get("metric")
    final = (s.get("final") or {}).get(metric) if isinstance(metric, str) else None
    headline = f"{metric} = {final:.4g}" if isinstance(final, int | float) else ""
    problems = "".join(f"<div>{escape(p)}</div>" for p in data.problems)
    return (
        f'<h1>{escape(data.run_dir.resolve().name)} <span class="badge {status_class(data)}">{escape(status)}</span></h1>'
        f'<div class="sub">{escape(headline)}{" &middot; " if headline else ""}'
        f'{escape(str(len(data.rows)))} metric rows &middot; {escape(str(data.run_dir.resolve()))}</div>'
        '<div id="render-status"></div>'
        + (f'<div class="problems">{problems}</div>' if problems else "")
    )
