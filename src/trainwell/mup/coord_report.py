"""The coordinate check's outputs: a table in words for the terminal, and an HTML page with
one plot per parametrization (each module's activation growth against width) and the
table, self-contained (inline SVG, no script, no font file)."""

from __future__ import annotations

import math
from html import escape

from trainwell.mup.coord import CoordData
from trainwell.report.charts import Line, line_chart

LABEL = {"sp": "SP", "mup": "muP"}
COLORS = ("#D55E00", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9")
SHOWN = 6
"""Modules drawn per plot: the ones that grow most (a GPT has dozens; the table lists all)."""


def _worst(data: CoordData, param: str, module: str) -> float:
    g = [x for x in data.growth(param, module) if math.isfinite(x)]
    return max(g, default=math.nan)


def table(data: CoordData) -> list[str]:
    """One line per module: its largest growth over the steps under each parametrization."""
    params = list(data.l1)
    modules = list(data.l1[params[0]])
    span = data.widths[-1] / data.widths[0]
    name_w = max(len(m or "(model)") for m in modules)
    head = f"{'module':<{name_w}}  " + "  ".join(f"{LABEL.get(p, p) + ' growth':>12}" for p in params)
    out = [f"activation size at {data.widths[-1]} / at {data.widths[0]} ({span:g}x width), "
           f"largest over {data.steps} steps, mean of {data.seeds} seeds", head]
    for m in modules:
        cells = "  ".join(f"{_worst(data, p, m):>11.2f}x" for p in params if m in data.l1[p])
        out.append(f"{m or '(model)':<{name_w}}  {cells}")
    return out


def _plot(data: CoordData, param: str, ylim: tuple[float, float]) -> str:
    modules = sorted(data.l1[param], key=lambda m: -_worst(data, param, m))[:SHOWN]
    series = []
    for i, m in enumerate(modules):
        last = [row for row in zip(*data.l1[param][m], strict=True)]  # width -> per step
        ys = [math.log2(v[-1] / last[0][-1]) if v[-1] > 0 and last[0][-1] > 0 else math.nan for v in last]
        series.append(Line(m or "(model)", data.widths, ys, COLORS[i % len(COLORS)]))
    return line_chart(series, title=f"{LABEL.get(param, param)}: activation growth at step {data.steps}",
                      xlabel="width", ylabel="log2 (mean |x| / at base width)", ylim=ylim, log_x=True, legend="svg")


def html(data: CoordData, title: str) -> str:
    top = max((math.log2(g) for p in data.l1 for m in data.l1[p] for g in data.growth(p, m)
               if math.isfinite(g) and g > 0), default=1.0)
    ylim = (-3.0, max(2.0, math.ceil(top)))
    plots = "".join(f'<div class="panel">{_plot(data, p, ylim)}</div>' for p in data.l1)
    verdicts = []
    for p in data.l1:
        probs = data.problems(p)
        word = "every module keeps its size" if not probs else "; ".join(probs)
        verdicts.append(f"<li><b>{LABEL.get(p, p)}</b>: {escape(word)}</li>")
    rows = "\n".join(escape(line) for line in table(data))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ margin: 0; padding: 18px 24px 40px; background: #f5f6f8; color: #1d2330;
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }}
h1 {{ font-size: 22px; margin: 0 0 2px; }}
.sub {{ color: #5a6475; margin-bottom: 12px; }}
.grid2 {{ display: grid; gap: 12px; grid-template-columns: repeat(2, minmax(0, 1fr)); }}
.panel {{ background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 12px; }}
.panel svg {{ width: 100%; height: auto; }}
pre {{ background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 12px; }}
</style></head><body>
<h1>{escape(title)}</h1>
<div class="sub">widths {', '.join(map(str, data.widths))}; {data.steps} steps, {data.seeds} seeds,
{data.seconds:.1f} s. A module passes when its activations grow at most 2x over the widths and end
at least 0.5x (Yang et al. 2022, the coordinate check).</div>
<ul>{''.join(verdicts)}</ul>
<div class="grid2">{plots}</div>
<h3>All modules</h3><pre>{rows}</pre>
</body></html>
"""
