"""Does the best learning rate stay put as the model widens? SP against muP, with `trainwell tune`.

    python benchmarks/mup_transfer.py digits   [--params sp mup] [--seeds 0] [--workers 2]
    python benchmarks/mup_transfer.py bytes-lm [--params sp mup] [--seeds 0] [--workers 2]
    python benchmarks/mup_transfer.py report   # the tables and plots from the saved studies
    python benchmarks/mup_transfer.py digits --seeds 1 --out DIR; ... report --out DIR   # table only

For each parametrization, one grid study (``trainwell tune``, sampler grid) sweeps the peak
learning rate (2/3-octave steps for digits, half-octave for bytes-lm) at the base width and
at 4x and 16x, every other setting the task's defaults for a short run (``TASKS`` below), no
autopilot. Each trial is judged by its mean training loss over its last 10% of steps. The
best learning rate of a width is found on the log of the seeds' mean loss, averaged with its
grid neighbours, as the minimum of the parabola through the best point and its two
neighbours (``best_log2_lr``), so shifts smaller than the grid's spacing are resolved. The
shift is log2(best lr at the width / best lr at the base width), in octaves. Studies go to
runs/mup-transfer/<task>-<param>/; ``report`` writes docs/images/mup_transfer_<task>_<param>.svg
and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = DEFAULT_OUT = ROOT / "runs" / "mup-transfer"
IMAGES = ROOT / "docs" / "images"

QUIET = {"guards": {"enabled": False}, "instruments": {"preset": "off"},
         "log": {"progress": "off", "tensorboard": False, "every": 1},
         "checkpoint": {"every_steps": 0, "every_minutes": 0.0, "final": False}}
"""No autopilot (a rescued trial would hide where a learning rate diverges), no instruments,
no checkpoints: only the final evaluation matters."""

TASKS = {
    # the muP paper's MLP (and the coordinate check's): 64 -> w -> w -> 10, ReLU, no norm
    "digits": {
        "config": {"task": {"name": "digits"}, "train": {"steps": 200, "eval_every": 0},
                   "model": {"kind": "mlp", "depth": 2, "residual": False, "norm": "none",
                             "activation": "relu"}},
        "base": 32, "lr": (2.0**-12, 2.0**-2), "points": 16,
    },
    # a 2-block GPT at base width 16 (2 heads): 16x is width 256 (1.7M parameters); short
    # runs of 8 x 64 bytes a step keep the 16x sweep within minutes on 2 shared cores
    "bytes-lm": {
        "config": {"task": {"name": "bytes-lm", "seq_len": 64}, "train": {"steps": 80, "batch_size": 8,
                   "eval_every": 0, "eval_batches": 4}, "schedule": {"warmup_steps": 8},
                   "model": {"kind": "gpt", "depth": 2, "heads": 2}, "log": {"sample_chars": 0}},
        "base": 16, "lr": (2.0**-10, 2.0**-3), "points": 15,
    },
}
TAIL = 0.1
"""A trial's loss is its mean training loss over the last 10% of its steps (logged every step):
the muP paper's measure, and far less noisy than one evaluation of a small test set (the
digits test set's loss jumped by 3x between neighbouring learning rates in a flat basin)."""
MULTS = (1, 4, 16)


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def study(task: str, param: str, seeds: list[int]) -> dict:
    t = TASKS[task]
    cfg = deep_merge(deep_merge(t["config"], QUIET), {"model": {"parametrization": param,
                                                                 "mup_base_width": t["base"]}})
    cfg["tune"] = {
        "name": f"mup-{task}-{param}", "sampler": "grid", "grid_points": t["points"], "objective": "final",
        "space": {"optim.lr": {"log": list(t["lr"])},
                  "model.width": {"choice": [t["base"] * m for m in MULTS]},
                  "seed": {"choice": seeds}},
    }
    return cfg


def run(task: str, params: list[str], seeds: list[int], workers: int) -> None:
    from trainwell.tune import tune

    for param in params:
        d = OUT / f"{task}-{param}"
        print(f"== {task} {param}: {d}", flush=True)
        tune(study(task, param, seeds), study_dir=d, workers=workers)


def final_loss(run_dir: Path | None) -> float:
    """The trial's mean train/loss over its last TAIL of steps (inf if it diverged or failed)."""
    from trainwell.sinks.jsonl import read_jsonl

    if run_dir is None or not (Path(run_dir) / "metrics.jsonl").exists():
        return math.inf
    rows = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if "train/loss" in r]
    if not rows:
        return math.inf
    last = rows[-1]["step"]
    tail = [r["train/loss"] for r in rows if r["step"] > last * (1 - TAIL)]
    mean = sum(tail) / len(tail)
    return mean if math.isfinite(mean) else math.inf


def curves(task: str, param: str) -> dict[int, dict[float, float]]:
    """width -> lr -> the trials' loss (final_loss), mean over seeds (inf where one diverged)."""
    from trainwell.tune import load_handle, result

    res = result(load_handle(OUT / f"{task}-{param}"))
    acc: dict[int, dict[float, list[float]]] = {}
    for t in res.trials:
        if "model.width" not in t.params:  # not started yet (a study still running)
            continue
        w, lr = int(t.params["model.width"]), float(t.params["optim.lr"])
        run_dir = OUT / f"{task}-{param}" / "trials" / Path(t.run_dir).name if t.run_dir else None
        acc.setdefault(w, {}).setdefault(lr, []).append(final_loss(run_dir))  # the study may have moved
    return {w: {lr: sum(v) / len(v) for lr, v in sorted(by.items())} for w, by in sorted(acc.items())}


def best_log2_lr(curve: dict[float, float]) -> float:
    """Where the loss is lowest, in log2 lr: the log-loss averaged with its neighbours on the
    grid (near the optimum the losses of neighbouring lrs differ by less than their noise),
    then the minimum of the parabola through the best point and its two neighbours."""
    lrs = list(curve)
    logs = [math.log(max(v, 1e-9)) for v in curve.values()]  # inf (diverged) stays inf
    smooth = [sum(logs[max(0, i - 1):i + 2]) / len(logs[max(0, i - 1):i + 2]) for i in range(len(logs))]
    xs, ys = [math.log2(lr) for lr in lrs], smooth
    i = min(range(len(ys)), key=ys.__getitem__)
    if i == 0 or i == len(ys) - 1 or not all(math.isfinite(y) for y in ys[i - 1:i + 2]):
        return xs[i]  # at the edge of the grid: no interpolation (and the grid should widen)
    (x0, x1, x2), (y0, y1, y2) = xs[i - 1:i + 2], ys[i - 1:i + 2]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    return -b / (2 * a) if a > 0 else xs[i]


def report(task: str) -> list[str]:
    from trainwell.report.charts import Line, line_chart

    lines, summary, data = [], {}, {}
    colors = {1: "#0072B2", 4: "#E69F00", 16: "#D55E00"}
    for param in ("sp", "mup"):
        if not (OUT / f"{task}-{param}").exists():
            continue
        c = data[param] = curves(task, param)
        widths = sorted(c)
        base = widths[0]
        best = {w: best_log2_lr(c[w]) for w in widths}
        for w in widths:
            lines.append(f"| {task} | {param} | {w} ({w // base}x) | {2 ** best[w]:.3g} | "
                         f"{best[w] - best[base]:+.2f} | {min(c[w].values()):.4f} |")
        summary[param] = {str(w): {"best_lr": 2 ** best[w], "shift_octaves": best[w] - best[base],
                                   "curve": {f"{k:.6g}": v for k, v in c[w].items()}} for w in widths}
    finite = [v for c in data.values() for cw in c.values() for v in cw.values() if math.isfinite(v) and v > 0]
    ylim = (math.log10(min(finite)) - 0.1, math.log10(max(finite)) + 0.1) if finite else None
    if OUT != DEFAULT_OUT:  # another set of studies (another seed): the table only
        data = {}
    IMAGES.mkdir(parents=True, exist_ok=True)
    for param, c in data.items():
        widths = sorted(c)
        lrs = sorted(c[widths[0]])
        chart = [Line(f"width {w}", lrs, [math.log10(c[w][lr]) if math.isfinite(c[w].get(lr, math.inf))
                                            else math.nan for lr in lrs], colors.get(w // widths[0], "#888"))
                 for w in widths]
        name = "muP" if param == "mup" else "SP"
        svg = line_chart(chart, title=f"{task}, {name}: final train loss against peak lr", log_x=True,
                         xlabel="learning rate", ylabel="log10 train loss", ylim=ylim, legend="svg")
        (IMAGES / f"mup_transfer_{task}_{param}.svg").write_text(svg)
    (OUT / f"{task}-summary.json").write_text(json.dumps(summary, indent=1))
    return lines


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=[*TASKS, "report"])
    ap.add_argument("--params", nargs="+", default=["sp", "mup"], choices=["sp", "mup"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--workers", type=int, default=2, help="trials at once, one thread each (default 2)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the studies go (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args()
    OUT = args.out
    if args.what == "report":
        print("| task | parametrization | width | best lr | shift (octaves) | best loss |")
        print("|---|---|---|---|---|---|")
        for task in TASKS:
            print("\n".join(report(task)))
        return
    run(args.what, args.params, args.seeds, args.workers)


if __name__ == "__main__":
    sys.exit(main())
