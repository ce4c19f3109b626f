"""``write_report(run_dir)``: one self-contained ``report.html`` for a run directory.

The page holds its data as JSON, its stylesheet and its script inline (``static/report.css``
and ``static/report.js``, through ``assets.html_page``): it opens from a laptop, an
air-gapped cluster or an e-mail attachment, with nothing fetched at view time.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from trainwell.distill.verdict import verdict_html
from trainwell.quantize.report import quantize_html
from trainwell.report.assets import html_page, script
from trainwell.report.hists import histogram_panels
from trainwell.report.load import RunData, load_run
from trainwell.report.panels import (
    EVENT_COLORS,
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


def _panel_box(p: dict[str, Any]) -> str:
    note = f'<div class="note">{escape(p["note"])}</div>' if p.get("note") else ""
    return f'<div class="panel" id="{escape(p["id"])}"><div class="ptitle">{escape(p["title"])}</div>{note}</div>'


def _grid(panels: list[dict[str, Any]], cls: str = "grid2") -> str:
    return f'<div class="{cls}">' + "".join(_panel_box(p) for p in panels) + "</div>" if panels else ""


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
    payload = {
        "xrange": [min(steps), max(steps)],
        "colors": EVENT_COLORS,
        "events": events(data),
        "panels": panels,
        "small": hist_layers,
    }

    parts = [_head(data), f"<h2>Findings</h2>{findings_html(data)}", f"<h2>Run</h2>{header_html(data)}"]
    parts.append(verdict_html(data.config, data.summary))  # '' unless the run had a teacher
    parts.append(quantize_html(data.run_dir, data.rows))  # '' without outlier readings or quantize.json
    parts.append("<h2>Training curves</h2>" + _marker_key(payload["events"], panels) + _grid(training))
    parts.append("<h2>Autopilot</h2>" + _grid(autopilot) + "<h3 style='margin-top:12px'>Logbook</h3>" + logbook_html(data.logbook))
    parts.append("<h2>Instruments</h2>")
    if not (columns or noise or other_inst or families or hist_layers):
        parts.append('<p class="muted" id="no-instruments">No instrument measurements in this run '
                     "(set <code>instruments.preset = \"economy\"</code> for the Cockpit view).</p>")
    if columns:
        parts.append('<div class="grid3 cockpit">' + "".join(
            f'<div class="column"><h3>{escape(c["heading"])}</h3>' + "".join(_panel_box(p) for p in c["panels"]) + "</div>"
            for c in columns) + "</div>")
    parts.append(_grid(noise + other_inst, "grid3"))
    skipped = unsupported_modules(data)
    if skipped:
        parts.append('<p class="muted">The instruments could not see into: ' + escape(", ".join(skipped)) + "</p>")
    if families or hist_layers:
        parts.append("<h3 style='margin-top:14px'>Per layer</h3>" + layer_table_html(families))
        if hist_layers:
            parts.append(f'<details class="layer-hists"><summary>Gradient histograms per layer at the last measured step '
                         f"({len(hist_layers)})</summary>"
                         '<div class="smalls">' + "".join(_panel_box(p) for p in hist_layers) + "</div></details>")
    if system or leftover:
        parts.append("<h2>System</h2>" + _grid(system + leftover, "grid3"))
    parts.append(f'<footer>Generated {datetime.now(UTC).isoformat(timespec="seconds")} by '
                 f"<code>trainwell report</code> from {escape(str(data.run_dir.resolve()))}.</footer>")

    blob = json.dumps(payload, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    scripts = f'<script type="application/json" id="report-data">{blob}</script>\n<script>{script()}</script>'
    return html_page(f"{data.run_dir.name}: trainwell report", "\n".join(parts), scripts=scripts)


def _marker_key(evs: list[dict[str, Any]], panels: list[dict[str, Any]]) -> str:
    """One key for the markers every chart shares, instead of a legend entry per chart."""
    items = []
    kinds: dict[str, int] = {}
    for e in evs:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + e["count"]
    for kind, n in kinds.items():
        dash = " dash" if kind == "restart" else ""
        color = EVENT_COLORS.get(kind, "#888888")
        items.append(f'<span><span class="swatch{dash}" style="border-color:{color}"></span>{escape(kind)} ({n})</span>')
    series = [s for p in panels for s in p.get("series", [])]
    if any(g["faded"] for s in series for g in s["segs"]):
        items.append('<span><span class="swatch line"></span>stretch abandoned by a rollback (logged, then redone)</span>')
    if any(s["bad"] for s in series):
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
