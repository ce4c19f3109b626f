"""The run report's 'Quantisation' section: the outliers the training measured (with the
growing-outliers warning) and the verdict of ``trainwell quantize`` (``quantize.json``).
Empty when the run has neither."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from trainwell.quantize.verdict import VERDICT_FILE


def quantize_html(run_dir: Path, rows: list[dict[str, Any]]) -> str:
    """The section's HTML ('' when there is nothing to show)."""
    parts = [_outliers_html(rows), _verdict_html(run_dir / VERDICT_FILE)]
    if not any(parts):
        return ""
    return '<h2>Quantisation</h2><div class="card" id="quantize">' + "".join(parts) + "</div>"


def _num(x: Any, fmt: str = ".4g") -> str:
    return format(x, fmt) if isinstance(x, int | float) and math.isfinite(x) else "-"


def _outliers_html(rows: list[dict[str, Any]]) -> str:
    from trainwell.diagnose.rules_outliers import outliers_growing
    from trainwell.instruments.outliers import MAX_STD_BAR, series

    max_std, kurt = series(rows, "in_max_std"), series(rows, "in_kurt")
    if not max_std:
        return ""
    finding = outliers_growing(max_std)
    out = ["<h3>Outliers during training</h3>"]
    if finding is not None:
        evidence = "; ".join(f"{k}: {v}" for k, v in finding.evidence.items())
        out.append(f'<div class="finding warn" id="outliers-growing"><div class="sev">{finding.severity}</div>'
                   f"<div><b>{escape(finding.title)}</b><div class='evidence'>{escape(evidence)}</div>"
                   f"<div class='fix'><b>Fix:</b> {escape(finding.fix)}</div></div></div>")
    else:
        out.append(f'<p class="ok-text" id="outliers-ok">No layer input grew past max/std {MAX_STD_BAR:g}: '
                   "int8 quantisation meets no outlier worth keeping in full precision.</p>")
    head = ("<tr><th class='layer'>layer input</th><th>max/std first</th><th>max/std peak</th><th>max/std last</th>"
            "<th>kurtosis last</th></tr>")
    body = []
    for layer, points in sorted(max_std.items(), key=lambda kv: -kv[1][-1][1]):
        k = kurt.get(layer, [])
        peak = max(points, key=lambda p: p[1])
        body.append(f"<tr><td>{escape(layer)}</td><td class='num'>{_num(points[0][1], '.3g')} (step {points[0][0]})</td>"
                    f"<td class='num'>{_num(peak[1], '.3g')} (step {peak[0]})</td>"
                    f"<td class='num'>{_num(points[-1][1], '.3g')} (step {points[-1][0]})</td>"
                    f"<td class='num'>{_num(k[-1][1] if k else None, '.3g')}</td></tr>")
    out.append(f'<div class="scroll-x"><table class="layers" id="outlier-table">{head}{"".join(body)}</table></div>')
    return "".join(out)


def _verdict_html(path: Path) -> str:
    if not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _verdict_table(data)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f'<p class="muted">{escape(path.name)}: could not be read ({escape(str(e))}).</p>'


def _verdict_table(data: dict[str, Any]) -> str:
    metric = data["metric"]
    spread = data["spread"]
    cols = ["method", metric, "change", "vs spread", "verdict", "file", "smaller", "ms/batch", "speed-up",
            "worst layer SQNR"]
    rows = [["fp32", _num(data["fp32_value"], ".5g"), "", "", "", _mb(data["fp32_file_bytes"]), "1x",
             _num(_ms(data["fp32_latency_s"]), ".1f"), "1x", ""]]
    missing = []
    for m in data["methods"]:
        if not m["available"]:
            missing.append(f"{m['method']}: not available here: {m['why_not']}")
            continue
        sq = {k: v for k, v in m["sqnr_db"].items() if isinstance(v, int | float)}
        worst = min(sq.items(), key=lambda kv: kv[1]) if sq else None
        rel = m.get("change_rel")
        rows.append([m["method"], _num(m["value"], ".5g"),
                     f"{_num(m['change'], '+.3g')} ({_num(100 * rel if isinstance(rel, int | float) else None, '+.2f')}%)",
                     f"{_num(m.get('change_over_spread'), '.2f')}x", m.get("verdict", ""), _mb(m["file_bytes"]),
                     f"{_num(m.get('size_ratio'), '.2f')}x", _num(_ms(m["latency_s"]), ".1f"),
                     f"{_num(m.get('speedup'), '.2f')}x", f"{_num(worst[1], '.1f')} dB {worst[0]}" if worst else "-"])
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    direction = "higher" if data["higher_is_better"] else "lower"
    keep = data.get("keep_full_precision") or []
    keep_text = ("Keep in full precision: " + "; ".join(f"{k['layer']} ({k['why']})" for k in keep) if keep
                 else f"Keep in full precision: none needed ({data.get('largest_outlier', '')}).")
    return (f"<h3>Verdict of <code>trainwell quantize</code></h3>"
            f"<p>Step {escape(str(data['step']))} ({'EMA' if data['weights'] == 'ema' else 'raw'} weights), {escape(metric)} "
            f"({direction} is better) on {escape(str(data['eval_batches']))} evaluation batches, CPU, "
            f"{escape(str(data['threads']))} thread(s). Spread of the fp32 model: {_num(spread['value'])} "
            f"({escape(str(spread['detail']))}).</p>"
            f'<div class="scroll-x"><table class="layers" id="quantize-verdict"><tr>{head}</tr>{body}</table></div>'
            + "".join(f'<p class="muted">{escape(x)}</p>' for x in missing)
            + f"<p>{escape(keep_text)}</p>")


def _mb(n: Any) -> str:
    return f"{n / 1e6:.3f} MB" if isinstance(n, int | float) and n else "-"


def _ms(s: Any) -> float | None:
    return s * 1e3 if isinstance(s, int | float) else None
