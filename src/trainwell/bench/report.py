"""``bench.html``: one self-contained page for a benchmark, regenerated from its results
folder: per problem the table with intervals and verdicts (for deepobs and budget on the
test split, for the setting chosen on validation; the header says which), DeepOBS's
performance plot (the final runs' validation metric over training, mean over seeds) and,
for the deepobs protocol, the learning-rate sensitivity plot (final validation metric
against the learning rate of each grid point: what the choice was made on). The charts are
inline SVG from ``report.charts``."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from trainwell.bench.show import split_header
from trainwell.report.assets import html_page
from trainwell.report.charts import Line, line_chart
from trainwell.sinks import METRICS_FILE, read_jsonl
from trainwell.tune.report import _panel

REPORT_FILE = "bench.html"


def write_bench_report(root: Path, out: Path | None = None) -> Path:
    from trainwell.bench.results import read_results

    runs, table = read_results(root)
    path = out or root / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(root, runs, table))
    tmp.replace(path)
    return path


def _page(parts: list[str]) -> str:
    parts.append(f'<footer>Generated {datetime.now(UTC).isoformat(timespec="seconds")} by '
                 "<code>trainwell bench report</code>.</footer>")
    return html_page("trainwell bench", "\n".join(parts))


def render_algoperf(root: Path, runs: list[dict[str, Any]], table: dict[str, Any]) -> str:
    """The performance profiles (rho(tau) per algorithm, Dolan & More 2002), the scores and
    speed-ups, and per problem the time to target with the reasons of the misses."""
    import numpy as np

    from trainwell.bench.scoring import performance_profile, performance_ratios

    scores = table["scores"]["algoperf"]
    ratios = performance_ratios({a: {p: (t if t is not None else math.inf) for p, t in ps.items()}
                                 for a, ps in scores["times"].items()})
    taus = list(np.linspace(1.0, scores["r_max"], 61))
    curves = [Line(a, taus, [float(v) for v in performance_profile(r, taus)]) for a, r in ratios.items()]
    head = ["algorithm", "score", f"speed-up over {scores['reference']}"]
    rows = [[a, f"{v:.4f}", _fmt(scores["speedup"].get(a))] for a, v in
            sorted(scores["score"].items(), key=lambda kv: -kv[1])]
    parts = ["<h1>trainwell bench: algoperf</h1>", f'<p class="muted">{len(runs)} runs in {escape(str(root))}</p>',
             _html_table(head, rows),
             f'<div class="grid2">{_panel("performance profiles", _chart(curves, "fraction of problems", "tau"))}</div>']
    for problem in sorted({x["problem"] for x in table["lines"]}):
        ls = [x for x in table["lines"] if x["problem"] == problem]
        prows = [[x["algorithm"], _fmt(x["time_to_target_s"]) if x["time_to_target_s"] is not None else "inf",
                  f"{x['reached']} of {x['runs']}", ", ".join(f"{k} {v}" for k, v in x["missed"].items()) or "-"]
                 for x in ls]
        parts += [f"<h2>{escape(problem)}: target {escape(ls[0]['metric'])} {ls[0]['target']:.4g}</h2>",
                  _html_table(["algorithm", "time to target (s)", "runs at target", "missed"], prows)]
    return _page(parts)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    return ('<table class="tbl"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def render(root: Path, runs: list[dict[str, Any]], table: dict[str, Any]) -> str:
    protocol = table["protocol"]
    if protocol == "algoperf":
        return render_algoperf(root, runs, table)
    scores = table["scores"][protocol]
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_problem[r["problem"]].append(r)
    parts = [f"<h1>trainwell bench: {escape(protocol)}</h1>",
             f'<p class="muted">{len(runs)} runs in {escape(str(root))}</p>', _wins(scores)]
    for problem, rs in by_problem.items():
        lines = [x for x in table["lines"] if x["problem"] == problem]
        panels = [_panel("performance", _chart(_mean_curves(rs), rs[0]["metric"]),
                         "final runs, validation, mean over seeds at each evaluation")]
        if protocol == "deepobs":
            panels.append(_panel("learning-rate sensitivity", _chart(_lr_curves(rs), rs[0]["metric"],
                                                                     "optim.lr", log_x=True),
                                 "final validation metric of each grid point; gaps are runs without a value"))
        parts += [f"<h2>{escape(problem)}</h2>", f'<p class="muted">{escape(split_header(lines[0]))}</p>',
                  _table(lines, scores["problems"].get(problem, {})),
                  f'<div class="grid2">{"".join(panels)}</div>']
    return _page(parts)


def _wins(scores: dict[str, Any]) -> str:
    wins = scores.get("wins", {})
    if not wins:
        return ""
    items = ", ".join(f"{escape(a)} {n}" for a, n in sorted(wins.items(), key=lambda kv: -kv[1]))
    return f"<p>Problems won or tied (overlapping 95% intervals are ties): {items}</p>"


def _table(lines: list[dict[str, Any]], verdicts: dict[str, Any]) -> str:
    test = bool(lines) and lines[0].get("split") == "test"
    head = ["algorithm", "schedule", "test mean" if test else "validation mean", "std", "95% interval", "seeds",
            *(["validation mean"] if test else []), "infeasible", "interventions", "verdict"]
    rows = []
    for x in lines:
        v = verdicts.get("algorithms", {}).get(x["algorithm"], {})
        ci = x.get("ci")
        rows.append([x["algorithm"], x["schedule"], _fmt(x["mean"]), _fmt(x["std"]),
                     f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-", f"{x['n']} of {x['runs']}",
                     *([_fmt(x.get("val_mean"))] if test else []), str(x["infeasible"]),
                     str(x["interventions"]), v.get("verdict", "-") if v.get("schedule") == x["schedule"] else "-"])
    return _html_table(head, rows)


def _chart(lines: list[Line], ylabel: str, xlabel: str = "step", log_x: bool = False) -> str:
    return line_chart(lines, xlabel=xlabel, ylabel=ylabel, log_x=log_x, attrs=f'data-curve="{escape(ylabel)}"')


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def _mean_curves(rs: list[dict[str, Any]]) -> list[Line]:
    """Per algorithm (and schedule), the mean over its final runs of the metric at each step."""
    by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rs:
        if r["role"] != "final" or not r.get("run_dir"):
            continue
        label = r["algorithm"] + ("" if r["schedule"] == "constant" else f" ({r['schedule']})")
        for row in read_jsonl(Path(r["run_dir"]) / METRICS_FILE):
            value = row.get(r["metric"])
            if isinstance(value, (int, float)) and math.isfinite(value):
                by[label][int(row["step"])].append(float(value))
    return [Line(label, sorted(steps), [statistics.fmean(steps[s]) for s in sorted(steps)])
            for label, steps in by.items()]


def _lr_curves(rs: list[dict[str, Any]]) -> list[Line]:
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rs:
        lr = r["params"].get("optim.lr")
        if r.get("rerun_of") is None and lr is not None:
            by[r["algorithm"]].append((lr, r["value"] if r["value"] is not None else math.nan))
    return [Line(a, [p[0] for p in sorted(pts)], [p[1] for p in sorted(pts)]) for a, pts in by.items()]
