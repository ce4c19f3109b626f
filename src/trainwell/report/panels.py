"""Which charts the report shows, decided from the data: a panel appears only when its
keys were logged. Each panel is a ``Panel`` of ``Series``, drawn by ``report.draw`` with ``report.charts``.

Layout, top to bottom: training curves (loss, the task's metric, LR, gradient norm with
the clip line, clipped fraction, other train/* keys), the autopilot's counters, the
Cockpit view of the instruments (STEP SIZE, GRADIENTS, CURVATURE columns as in Schneider
et al. 2021, Fig. 2), the gradient noise scale, any other inst/* key, then sys/*.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainwell.report.charts import PALETTE, HLine
from trainwell.report.load import RunData
from trainwell.report.series import (
    Segment,
    nonfinite_points,
    rolling_mean,
    segments,
    smoothed_segments,
    wants_log,
)

SMOOTH_MIN = 50
"""Curves with at least this many points get a smoothed line over the faint raw one (the
page can switch it off); shorter ones are readable raw."""

EVENT_COLORS = {"skip": "#E69F00", "quarantine": "#CC79A7", "rollback": "#D55E00", "restart": "#D55E00",
                "stop": "#000000", "multiplier": "#0072B2", "recovered": "#009E73"}
"""Marker colour per logbook kind (others grey); a restart is dashed in its rollback's colour."""

CLIPPED_WINDOW = 10
"""Logged rows in the clipped-fraction rolling mean: train/clipped is 0 or 1 per logged
step, so the raw curve is a comb; ten rows give a readable fraction."""
CLIPPED_SPAN = 200
"""On long runs the window grows to 1/200 of the logged rows: a 10-row mean of a million
rows is as unreadable as the raw comb."""
CLIPPED_RAW_MAX = 500
"""The raw 0/1 comb is drawn only up to this many rows (beyond, it is a solid block)."""

# Cockpit columns: (panel title, y label, [(key, legend label)], note). Keys are inst/<name>.
STEP_SIZE = [
    ("Alpha (step size)", "alpha", [("inst/alpha", "alpha")],
     "-1 no step, 0 valley floor, 1 far wall at equal loss, >1 loss went up; the best runs sit a bit above 0"),
    ("Distance and update size", "L2 norm", [("inst/distance", "distance from init"), ("inst/update_size", "update size")], ""),
    ("Gradient and parameter norm", "L2 norm", [("inst/grad_norm", "gradient norm"), ("inst/param_norm", "parameter norm")], ""),
    ("Update / parameter ratio", "ratio", [("inst/update_ratio", "update / param")], "about 1e-3 per step is the usual healthy range"),
]
GRADIENTS = [
    ("Gradient tests", "test value", [("inst/norm_test", "norm test"), ("inst/inner_test", "inner product test"), ("inst/ortho_test", "orthogonality test")],
     "above 1: gradient noise dominates the batch gradient; a bigger batch would help"),
    ("Gradient signal-to-noise", "mean GSNR", [("inst/mean_gsnr", "mean GSNR")], ""),
]
CURVATURE = [
    ("Hessian max eigenvalue", "lambda max", [("inst/hess_max_ev", "lambda max")], "sharpness; the stability edge of (S)GD is 2 / lr"),
    ("Hessian trace", "trace", [("inst/hess_trace", "trace")], "rising: a narrowing valley"),
    ("TIC", "TIC", [("inst/tic", "TIC")], "generalisation-gap proxy, meaningful near a minimum"),
]
NOISE = [
    ("Gradient noise scale", "batch size", [("inst/noise_scale", "B_simple (micro-batches)"), ("inst/noise_scale_ps", "B_simple (per-sample)")],
     "the batch size beyond which larger batches stop paying (McCandlish et al. 2018)"),
]
REFERENCE_LINES = {
    "Alpha (step size)": [HLine(0.0, "0: the valley floor")],
    "Gradient tests": [HLine(1.0, "1: noise = signal")],
}
"""Dashed horizontal lines that give a gauge its meaning (Cockpit draws the same ones)."""
KNOWN = {
    "train/final_act_norm": ("Final-layer input RMS", "OPT-175B watched its growth: a steady climb precedes divergence"),
    "train/loss_scale": ("fp16 loss scale", "drops at each overflow; a collapse to 1 means fp16 cannot hold the gradients"),
    "train/input_rms": ("Input RMS", "largest per-sample RMS of the inputs; far from 1 means mis-scaled data"),
    "sys/step_time_s": ("Step time (s)", ""),
    "sys/data_time_frac": ("Data wait (share of step time)", "near 1: the input pipeline is the bottleneck"),
    "sys/samples_per_s": ("Throughput (samples/s)", ""),
    "sys/tokens_per_s": ("Throughput (tokens/s)", ""),
    "inst/final_act_rms": ("Final-layer input RMS (instrument)", ""),
}
"""Friendlier titles and a reading hint for keys the report knows; any other key is titled by its name."""
HIDDEN = ("inst/hess_max_ev/iters",)
"""Bookkeeping keys that would only clutter the page."""


@dataclass
class Series:
    """One logged key of a panel: its solid and faded stretches (downsampled), the smoothed
    trend (long curves only), the non-finite values, and how it is drawn."""

    key: str
    label: str
    color: str | None
    segs: list[Segment]
    bad: list[list[Any]] = field(default_factory=list)
    smooth: list[Segment] = field(default_factory=list)
    dots: bool = False
    dash: bool = False
    step: bool = False


@dataclass
class Panel:
    """One line chart of the report: ``log`` is the y scale it opens on, ``ylim`` a fixed y
    range (then no log toggle), ``events`` whether the logbook's markers are drawn on it,
    ``labels`` whether they carry their short labels (the LR panel: "lr x0.5")."""

    id: str
    title: str
    ylabel: str
    note: str
    series: list[Series]
    log: bool = False
    events: bool = False
    labels: bool = False
    hlines: list[HLine] = field(default_factory=list)
    ylim: tuple[float, float] | None = None


class PanelBuilder:
    """Builds panels and remembers which keys they used (the rest get generic panels)."""

    def __init__(self, data: RunData) -> None:
        self.data = data
        self.keys = data.keys()
        self.used: set[str] = set(HIDDEN)
        self._n = 0

    def has(self, key: str) -> bool:
        return key in self.keys

    def series(self, key: str, label: str | None = None, color: str | None = None,
               dash: bool = False, step: bool = False) -> Series | None:
        xs, ys = self.data.column(key)
        if not xs:
            return None
        self.used.add(key)
        return Series(
            key=key, label=label or key, color=color, segs=segments(xs, ys), bad=nonfinite_points(xs, ys),
            smooth=smoothed_segments(xs, ys) if len(xs) >= SMOOTH_MIN and not step else [],
            dots=len(xs) <= 60 and not step,  # sparse curves (eval) read better with dots
            dash=dash, step=step,
        )

    def panel(self, title: str, ylabel: str, series: Iterable[Series | None], note: str = "",
              **extra: Any) -> Panel | None:
        found = [s for s in series if s is not None]
        if not found:
            return None
        for i, s in enumerate(found):
            s.color = s.color or PALETTE[i % len(PALETTE)]
        self._n += 1
        ys = [y for s in found for seg in s.segs for y in seg.y if y is not None]
        return Panel(id=f"chart-{self._n}", title=title, ylabel=ylabel, note=note, series=found,
                     log=wants_log(ys), **extra)

    def simple(self, key: str) -> Panel | None:
        """One key, titled by its known name or else by the key itself."""
        title, note = KNOWN.get(key, (key, ""))
        return self.panel(title, key.split("/", 1)[-1], [self.series(key, key)], note)

    def specs(self, specs: Sequence[tuple[str, str, list[tuple[str, str]], str]]) -> list[Panel]:
        out = []
        for title, ylabel, keys, note in specs:
            p = self.panel(title, ylabel, [self.series(k, lbl) for k, lbl in keys], note,
                           hlines=REFERENCE_LINES.get(title, []))
            if p:
                out.append(p)
        return out


def training_panels(b: PanelBuilder) -> list[Panel]:
    """Loss, the task's metric (EMA alongside), LR, gradient norm and clipping, other train/*."""
    summary = b.data.summary or {}
    metric = summary.get("metric") if isinstance(summary.get("metric"), str) else None
    out = [
        b.panel("Loss", "loss", [
            b.series("train/loss", "train"),
            b.series("eval/loss", "eval"),
            b.series("eval_ema/loss", "eval (EMA weights)", dash=True),
        ], events=True),
    ]
    if metric and metric != "eval/loss":
        name = metric.split("/", 1)[-1]
        higher = summary.get("higher_is_better")
        hint = "higher is better" if higher is True else "lower is better" if higher is False else ""
        out.append(b.panel(f"{name} (the task's metric)", name, [
            b.series(metric, metric.split("/", 1)[0]),
            b.series(f"eval_ema/{name}", "eval (EMA weights)", dash=True),
            b.series(f"train/{name}", "train") if metric != f"train/{name}" else None,
        ], hint, events=True))
    for key in b.keys:  # other eval metrics, each with its EMA twin
        if key.startswith("eval/") and key not in b.used:
            name = key.split("/", 1)[1]
            out.append(b.panel(name, name, [b.series(key, "eval"), b.series(f"eval_ema/{name}", "eval (EMA weights)", dash=True)]))
    restarts = any(e.get("kind") == "restart" for e in b.data.logbook)
    out.append(b.panel("Learning rate", "lr", [b.series("train/lr", "lr", step=True)],
                       "each rollback lowered it: the new multiplier is labelled at the restart" if restarts else "",
                       events=True, labels=True))
    out.append(b.panel("Gradient norm", "global L2 norm", [
        b.series("train/grad_norm", "gradient norm (before clipping)"),
        b.series("train/clip_norm", "clip threshold", color="#D55E00", dash=True, step=True),
    ], "norms above the threshold were scaled down to it", events=True))
    clipped = clipped_panel(b)
    if clipped:
        out.append(clipped)
    for key in b.keys:
        if key.startswith("train/") and key not in b.used:
            out.append(b.simple(key))
    return [p for p in out if p]


def clipped_panel(b: PanelBuilder) -> Panel | None:
    """train/clipped is 0 or 1 per logged step: a rolling mean reads as the clipped fraction;
    the raw comb is drawn under it only while it is sparse enough to see its teeth."""
    xs, ys = b.data.column("train/clipped")
    if not xs:
        return None
    b.used.add("train/clipped")
    window = max(CLIPPED_WINDOW, len(ys) // CLIPPED_SPAN)
    series = [Series("train/clipped", f"rolling mean over {window} logs", None, segments(xs, rolling_mean(ys, window)))]
    if len(ys) <= CLIPPED_RAW_MAX:
        series.insert(0, Series("train/clipped", "clipped (per logged step)", "#bbbbbb", segments(xs, ys)))
    return b.panel("Clipped updates", "fraction clipped", series,
                   f"mean over the run: {sum(ys) / len(ys):.0%}", ylim=(0.0, 1.0))


def autopilot_panels(b: PanelBuilder) -> list[Panel]:
    keys = [k for k in b.keys if k.startswith("guard/")]
    nonzero = [k for k in keys if any(y for y in b.data.column(k)[1])]
    b.used.update(keys)
    if not nonzero:
        return []
    p = b.panel("Autopilot counters", "count (cumulative)",
                [b.series(k, k.split("/", 1)[1], step=True) for k in nonzero], events=True)
    return [p] if p else []


def is_layer_key(key: str) -> bool:
    """inst/<name>/<layer>: the last part names a module or parameter (it has a dot);
    inst/<name>/<sub> without a dot is a companion number of the instrument."""
    parts = key.split("/", 2)
    return len(parts) == 3 and parts[0] == "inst" and "." in parts[2]


def cockpit_columns(b: PanelBuilder) -> list[dict[str, Any]]:
    cols = [("STEP SIZE", b.specs(STEP_SIZE)), ("GRADIENTS", b.specs(GRADIENTS)), ("CURVATURE", b.specs(CURVATURE))]
    return [{"heading": h, "panels": ps} for h, ps in cols if ps]


def noise_panels(b: PanelBuilder) -> list[Panel]:
    return b.specs(NOISE)


def other_panels(b: PanelBuilder, prefix: str) -> list[Panel]:
    """One chart per remaining key under ``prefix`` (per-layer keys go to the layer table)."""
    out = []
    for key in b.keys:
        if key.startswith(prefix) and key not in b.used and not is_layer_key(key) and not key.startswith("inst/unsupported/"):
            out.append(b.simple(key))
    return [p for p in out if p]


def layer_families(data: RunData) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{family: {layer: (steps, values)}} for every per-layer key inst/<family>/<layer>."""
    fams: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for key in data.keys():
        if is_layer_key(key) and not key.startswith("inst/unsupported/"):
            _, fam, layer = key.split("/", 2)
            fams.setdefault(fam, {})[layer] = data.column(key)
    return fams


def unsupported_modules(data: RunData) -> list[str]:
    """Modules the instruments could not see into (keys inst/unsupported/<module>)."""
    return [k.split("/", 2)[2] for k in data.keys() if k.startswith("inst/unsupported/") and k.count("/") >= 2]


def events(data: RunData, limit: int = 400) -> list[dict[str, Any]]:
    """Logbook events with a step, for vertical markers: one per (kind, step), counted."""
    merged: dict[tuple[str, float], dict[str, Any]] = {}
    for e in data.logbook:
        kind, step = e.get("kind"), e.get("step")
        if kind == "summary" or not isinstance(kind, str) or not isinstance(step, int | float):
            continue
        m = merged.get((kind, float(step)))
        if m:
            m["count"] += 1
            continue
        label = ""
        if kind == "restart" and isinstance(e.get("lr_after"), int | float):
            label = f"lr x{e['lr_after']:g}"
        elif kind == "rollback":
            label = "rollback"
        merged[(kind, float(step))] = {
            "x": float(step), "kind": kind, "count": 1, "label": label,
            "message": str(e.get("message") or kind)[:500],
        }
    return list(merged.values())[:limit]
