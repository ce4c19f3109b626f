"""The verdict: per method the metric before and after, the change against the fp32 model's
spread, file size, CPU latency and per-layer SQNR; per layer the outliers; the layers to keep
in full precision. Written as ``quantize.json`` in the run directory and printed as a table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from trainwell.quantize.measure import LATENCY_REPEATS
from trainwell.quantize.source import Spread

VERDICT_FILE = "quantize.json"


@dataclass
class MethodResult:
    method: str
    available: bool
    why_not: str = ""
    config: str = ""
    """The torchao config that ran."""
    notes: list[str] = field(default_factory=list)
    value: float = math.nan
    """The task's metric of the quantised model."""
    change: float = math.nan
    """value - fp32 value (positive: the metric went up)."""
    change_ci: tuple[float, float] = (math.nan, math.nan)
    """95 % paired bootstrap interval of ``change`` over the evaluation batches."""
    file: str = ""
    file_bytes: int = 0
    latency_s: float = math.nan
    """Seconds of one evaluation batch on the CPU (the fastest of several)."""
    sqnr_db: dict[str, float] = field(default_factory=dict)
    """Layer -> SQNR of its output (dB), quantised layers only."""
    skipped: list[str] = field(default_factory=list)
    retied: list[str] = field(default_factory=list)
    reloaded_identical: bool | None = None
    """Whether the saved file, loaded into a fresh model, gives the same outputs."""


@dataclass
class LayerStats:
    name: str
    input_max_std: float
    input_kurtosis: float
    weight_max_std: float
    weight_kurtosis: float
    source: str
    """'training (step N)' from the outlier instrument, or 'first evaluation batch'."""


@dataclass
class Verdict:
    run_dir: str
    task: str
    metric: str
    higher_is_better: bool
    step: int
    weights: str
    eval_batches: int
    threads: int
    fp32_value: float
    fp32_file_bytes: int
    fp32_latency_s: float
    spread: Spread
    methods: list[MethodResult]
    layers: list[LayerStats]
    keep_full_precision: list[dict[str, str]]
    """[{"layer", "why"}]: the layers whose outliers suggest --skip."""
    largest_outlier: str = ""
    """The layer with the largest input max/std, in words (when none crosses the bar)."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["spread"] = self.spread.to_json()
        for m in out["methods"]:
            m.update(_derived(self, m))
        return _finite(out)


def _derived(v: Verdict, m: dict[str, Any]) -> dict[str, Any]:
    """Ratios a reader wants and the one-word verdict, computed from the stored numbers."""
    if not m["available"]:
        return {"verdict": "not available"}
    rel = m["change"] / abs(v.fp32_value) if v.fp32_value else math.nan
    over = abs(m["change"]) / v.spread.value if v.spread.value > 0 else math.inf
    worse = (m["change"] < 0) if v.higher_is_better else (m["change"] > 0)
    side = "worse" if worse else "better"
    lo, hi = m["change_ci"]
    if v.spread.how == "seeds":
        word = "within the seed spread" if over <= 1 else f"{side} by {over:.1f}x the seed spread"
    elif math.isfinite(lo) and math.isfinite(hi) and not lo <= 0 <= hi:  # no seed spread: does the
        # change stand out of the evaluation's noise?
        word = f"{side}: 95% interval {lo:+.3g} to {hi:+.3g}"
    else:
        word = "no change beyond evaluation noise"
    return {
        "change_rel": rel,
        "change_over_spread": over,
        "size_ratio": v.fp32_file_bytes / m["file_bytes"] if m["file_bytes"] else math.nan,
        "speedup": v.fp32_latency_s / m["latency_s"] if m["latency_s"] > 0 else math.nan,
        "verdict": word,
    }


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


# ---------------------------------------------------------------- text


def _num(x: float | None, fmt: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB" if n else "-"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render_text(data: dict[str, Any]) -> str:
    """The verdict (``Verdict.to_json()``, or quantize.json read back) as a plain-text table."""
    metric = data["metric"]
    direction = "higher" if data["higher_is_better"] else "lower"
    spread = data["spread"]
    lines = [
        f"quantize {data['run_dir']}: {data['task']}, step {data['step']} "
        f"({'EMA' if data['weights'] == 'ema' else 'raw'} weights); "
        f"{metric} ({direction} is better) on {data['eval_batches']} evaluation batches, CPU, "
        f"{data['threads']} thread{'s' if data['threads'] != 1 else ''}",
        f"spread of the fp32 {metric}: {_num(spread['value'])} ({spread['detail']})",
        "",
    ]
    rows = [["method", metric, "change", "vs spread", "verdict", "file", "smaller",
             "ms/batch*", "speed-up", "worst layer SQNR"]]
    rows.append(["fp32", _num(data["fp32_value"], ".5g"), "-", "-", "-", _mb(data["fp32_file_bytes"]),
                 "1.0x", _num(_ms(data["fp32_latency_s"]), ".1f"), "1.00x", "-"])
    unavailable = []
    for m in data["methods"]:
        if not m["available"]:
            unavailable.append(f"  {m['method']}: not available here: {m['why_not']}")
            continue
        worst = min(m["sqnr_db"].items(), key=lambda kv: kv[1] if kv[1] is not None else math.inf,
                    default=None)
        rows.append([
            m["method"], _num(m["value"], ".5g"),
            f"{m['change']:+.4g} ({_num(_pct(m['change_rel']), '+.2f')}%)",
            f"{_num(m['change_over_spread'], '.2f')}x", m["verdict"],
            _mb(m["file_bytes"]), f"{_num(m['size_ratio'], '.2f')}x",
            _num(_ms(m["latency_s"]), ".1f"), f"{_num(m['speedup'], '.2f')}x",
            f"{_num(worst[1], '.1f')} dB {worst[0]}" if worst else "-",
        ])
    lines += _columns(rows) + unavailable
    lines.append(f"  * one evaluation batch, the fastest of {LATENCY_REPEATS} alternating with fp32")
    lines += ["", _layer_heading(data)] + _columns(_layer_rows(data))
    lines += ["", *_keep_lines(data), *_file_lines(data)]
    return "\n".join(lines)


def _ms(s: float | None) -> float | None:
    return None if s is None else s * 1e3


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _layer_heading(data: dict[str, Any]) -> str:
    source = data["layers"][0]["source"] if data["layers"] else "-"
    return (f"per layer: SQNR in dB of the output on the fp32 input (6 dB = 1 bit); outliers of the "
            f"input and weight as max|x|/std and kurtosis (Gaussian: 3), from {source}")


def _layer_rows(data: dict[str, Any]) -> list[list[str]]:
    methods = [m for m in data["methods"] if m["available"]]
    rows = [["layer", "in max/std", "in kurt", "w max/std", "w kurt", *[m["method"] for m in methods]]]
    for layer in data["layers"]:
        name = layer["name"]
        rows.append([
            name, _num(layer["input_max_std"], ".1f"), _num(layer["input_kurtosis"], ".1f"),
            _num(layer["weight_max_std"], ".1f"), _num(layer["weight_kurtosis"], ".1f"),
            *[_num(m["sqnr_db"].get(name), ".1f") if name in m["sqnr_db"] else "fp32" for m in methods],
        ])
    return rows


def _keep_lines(data: dict[str, Any]) -> list[str]:
    keep = data["keep_full_precision"]
    if not keep:
        return [f"keep in full precision: none needed ({data['largest_outlier']})"]
    flags = " ".join(f"--skip {k['layer']}" for k in keep)
    return ["keep in full precision (outliers; rerun with " + flags + "):",
            *[f"  {k['layer']}: {k['why']}" for k in keep]]


def _file_lines(data: dict[str, Any]) -> list[str]:
    out = []
    for m in data["methods"]:
        if not m["available"]:
            continue
        check = {True: "reloaded: identical outputs", False: "RELOADED WITH DIFFERENT OUTPUTS",
                 None: "not reloaded"}[m["reloaded_identical"]]
        extra = [f"kept in fp32: {', '.join(m['skipped'])}"] if m["skipped"] else []
        extra += [f"re-tied {', '.join(m['retied'])}"] if m["retied"] else []
        out.append(f"{m['method']}: {m['config']} -> {m['file']} ({'; '.join([check, *extra])})")
        out += [f"  note: {n}" for n in m["notes"]]
    return out
