"""The report's static HTML parts: header facts, findings, the logbook table and the
per-layer small multiples (sparklines, drawn by ``report.charts``).

Everything from the run directory is escaped: a message or a layer name is text, never markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from trainwell.report.charts import sparkline
from trainwell.report.load import RunData

SEVERITY_ORDER = {"critical": 0, "error": 1, "high": 1, "warning": 2, "medium": 2, "info": 3, "low": 3}
"""Findings sort by severity (unknown severities last), the worst first."""


def fmt(v: Any) -> str:
    """A number the way a practitioner reads it (4 significant digits), anything else as text."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    return f"{v:.4g}"


def _get(d: Mapping[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "unknown"
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


def _parts(*pairs: tuple[str, Any]) -> str:
    """'label value' pieces joined by commas, leaving out the ones whose value is unknown."""
    return ", ".join(f"{label} {fmt(v)}".strip() for label, v in pairs if v is not None and v != "")


def header_facts(data: RunData) -> list[tuple[str, list[tuple[str, str]]]]:
    """(group, [(label, value)]) for the header cards; facts the run did not record are left out."""
    c, env, s = data.config, data.env or {}, data.summary or {}
    model = _get(c, "model", "kind")
    size = _parts(*[(k, _get(c, "model", k)) for k in ("depth", "width")],
                  ("heads", _get(c, "model", "heads") if model == "gpt" else None))
    if isinstance(s.get("model"), Mapping):  # a user's model (trainwell.fit): its class, not the config's [model]
        n = s["model"].get("parameters")
        model, size = s["model"].get("class"), (f"{fmt(n)} parameters" if isinstance(n, int) else "")
    elif _get(c, "task", "name") == "fit":
        model = None  # a fit() run from before summary.json named its model: [model] was not used
    betas = _get(c, "optim", "betas")
    accumulate = _get(c, "train", "accumulate")
    batch = _get(c, "train", "batch_size")
    run = [
        ("task", _get(c, "task", "name") or s.get("task")),
        ("model", f"{model}" + (f" ({size})" if size else "") if model else None),
        ("optimizer", _parts(("", _get(c, "optim", "name")), ("lr", _get(c, "optim", "lr")),
                             ("wd", _get(c, "optim", "weight_decay")),
                             ("betas", f"({', '.join(fmt(b) for b in betas)})" if isinstance(betas, list) else None))),
        ("schedule", _parts(("", _get(c, "schedule", "name")), ("warmup", _get(c, "schedule", "warmup_steps")))),
        ("steps", " x ".join(_parts((label, v)) for label, v in (
            ("", _get(c, "train", "steps")), ("batch", batch),
            ("accumulate", accumulate if isinstance(accumulate, int) and accumulate > 1 else None)) if v is not None)),
        ("clip / EMA", _parts(("max norm", _get(c, "clip", "max_norm")),
                              ("EMA", "off" if _get(c, "ema", "decay") == 0 else _get(c, "ema", "decay")))),
        ("precision", _parts(("", c.get("precision")), ("resolved to", env.get("precision")))),
        ("seed", c.get("seed", env.get("seed"))),
    ]
    machine = [
        ("device", ", ".join(x for x in (env.get("device"), f"{env['cpu_count']} CPUs" if "cpu_count" in env else None) if x)),
        ("versions", _parts(("torch", env.get("torch")), ("python", env.get("python")), ("trainwell", env.get("trainwell")))),
        ("git", env.get("trainwell_git_revision")),
        ("started", env.get("started")),
    ]
    last = data.rows[-1]
    outcome = [
        ("status", s.get("status", "no summary.json: running, or it crashed")),
        ("steps done", f"{fmt(s.get('steps', last['step']))}" + (f" ({fmt(s['iterations'])} batches)" if "iterations" in s else "")),
        ("wall time", _duration(s["wall_time_s"]) if "wall_time_s" in s else None),
    ]
    for k, v in sorted((s.get("final") or {}).items()):
        outcome.append((k + (" (the metric)" if k == s.get("metric") else ""), fmt(v)))
    for k, v in sorted((s.get("autopilot") or {}).items()):
        outcome.append((k, fmt(v)))
    groups = [("Run", run), ("Outcome", outcome), ("Machine", machine)]
    return [(g, [(k, fmt(v)) for k, v in facts if v not in (None, "")]) for g, facts in groups]


def header_html(data: RunData) -> str:
    cards = []
    for group, facts in header_facts(data):
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
        cards.append(f'<div class="card"><h3>{escape(group)}</h3><table class="facts">{rows}</table></div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


def status_class(data: RunData) -> str:
    status = str((data.summary or {}).get("status", "unknown"))
    return {"completed": "ok", "stopped": "bad", "halted": "bad", "interrupted": "warn"}.get(status, "warn")


def findings_html(data: RunData) -> str:
    if data.findings is None:
        return '<p class="muted" id="no-findings">No findings file (run <code>trainwell diagnose</code>).</p>'
    if not data.findings:
        return '<p class="ok-text">Diagnosis found nothing wrong.</p>'
    items = sorted(data.findings, key=lambda f: SEVERITY_ORDER.get(str(f.get("severity", "")).lower(), 9))
    out = []
    for f in items:
        sev = str(f.get("severity", "info")).lower()
        cls = {0: "bad", 1: "bad", 2: "warn"}.get(SEVERITY_ORDER.get(sev, 9), "info")
        evidence = f.get("evidence", "")
        if not isinstance(evidence, str):
            evidence = "; ".join(f"{k}: {fmt(v)}" for k, v in evidence.items()) if isinstance(evidence, Mapping) else str(evidence)
        out.append(
            f'<div class="finding {cls}"><div class="sev">{escape(sev)}</div>'
            f'<div><b>{escape(str(f.get("title", "(untitled)")))}</b>'
            f'<div class="evidence">{escape(evidence)}</div>'
            f'<div class="fix"><b>Fix:</b> {escape(str(f.get("fix", "")))}</div></div></div>'
        )
    return "".join(out)


def logbook_html(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return '<p class="muted">The logbook is empty: the autopilot never had to act.</p>'
    rows = []
    for e in events:
        kind, stamp = str(e.get("kind", "")), str(e.get("time", ""))
        rows.append(
            f'<tr class="ev-{escape(kind)}"><td class="time" title="{escape(stamp)}">{escape(_clock(stamp))}</td>'
            f'<td class="num">{escape(fmt(e.get("step", "")))}</td>'
            f'<td class="num">{escape(fmt(e.get("iteration", "")))}</td>'
            f'<td><span class="kind k-{escape(kind)}">{escape(kind)}</span></td>'
            f'<td>{escape(str(e.get("message") or ""))}</td></tr>'
        )
    return (
        '<div class="scroll"><table class="logbook" id="logbook"><thead><tr><th>time</th><th>step</th>'
        "<th>iteration</th><th>kind</th><th>message</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _clock(stamp: str) -> str:
    """The time of day of an ISO timestamp (the date is in the title): keeps the column narrow."""
    return stamp[11:19] if len(stamp) >= 19 and stamp[10] == "T" else stamp


def layer_table_html(families: Mapping[str, Mapping[str, tuple[list[float], list[float]]]]) -> str:
    """Layers as rows, quantities as columns; each cell a sparkline and the last value.

    Quantities measured on the same set of layers share a table (parameter norms in one,
    activation statistics of the activation modules in another), so no table is mostly empty."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for fam, layers in families.items():
        groups.setdefault(tuple(layers), []).append(fam)
    return "".join(_layer_table(layers, fams, families) for layers, fams in groups.items())


def _layer_table(
    layers: Sequence[str], fams: Sequence[str], families: Mapping[str, Mapping[str, tuple[list[float], list[float]]]]
) -> str:
    head = "".join(f"<th>{escape(f)}</th>" for f in fams)
    body = []
    for layer in layers:
        cells = []
        for fam in fams:
            xs, ys = families[fam][layer]
            finite = [y for y in ys if math.isfinite(y)]
            bad = len(ys) - len(finite)
            extra = f' <span class="badnum">{bad} non-finite</span>' if bad else ""
            rng = f"{fmt(min(finite))} .. {fmt(max(finite))}" if finite else "no finite value"
            cells.append(
                f'<td title="{escape(fam)} of {escape(layer)}: range {escape(rng)}">{sparkline(xs, ys)}'
                f'<div class="last">last {escape(fmt(ys[-1]))}{extra}</div></td>'
            )
        body.append(f'<tr><th class="layer">{escape(layer)}</th>{"".join(cells)}</tr>')
    return (
        '<div class="scroll-x"><table class="layers layer-table"><thead><tr><th>layer</th>'
        + head + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>"
    )
