"""``quantize_run``: quantise a run's model with each method, evaluate, save, verify, judge.

Order: load the run (its config builds the task and model; the newest valid checkpoint's
raw or EMA weights), evaluate fp32 on the task's evaluation batches (as many as training
evaluated), estimate the spread, record each layer's input on the first batch, then per
method: quantise a copy, evaluate it, measure per-layer SQNR and CPU latency, save it as
safetensors and load the file back into a fresh model to check the outputs. Everything
runs on the CPU in fp32.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.data.source import eval_batches
from trainwell.quantize.errors import QuantizeError
from trainwell.quantize.measure import (
    Evaluation,
    bootstrap_std,
    evaluate_batches,
    latencies,
    layer_inputs,
    layer_sqnr,
    paired_interval,
    tail_stats,
)
from trainwell.quantize.methods import METHODS, apply_method
from trainwell.quantize.source import LoadedRun, Spread, check_skips, load_run, seed_spread
from trainwell.quantize.store import load_quantized, save_quantized
from trainwell.quantize.verdict import VERDICT_FILE, LayerStats, MethodResult, Verdict
from trainwell.train.rundir import write_json

Progress = Callable[[str], None]


def quantize_run(
    run_dir: str | Path,
    methods: Sequence[str] = tuple(METHODS),
    *,
    ema: bool = False,
    out: str | Path | None = None,
    skip: Sequence[str] = (),
    progress: Progress = lambda _: None,
) -> Verdict:
    """Quantise the run's model with each of ``methods``, write each file (``out``, or
    ``RUN_DIR/quantized/<method>[-ema].safetensors``) and ``RUN_DIR/quantize.json``; return
    the verdict. Raises QuantizeError listing every problem with the request at once."""
    problems = [f"--method {m!r}: unknown; valid: {', '.join(METHODS)}" for m in methods if m not in METHODS]
    if out is not None and len(methods) != 1:
        problems.append(f"--out names one file but {len(methods)} methods were asked for; "
                        "give one --method with --out (without --out each gets its own file)")
    if problems:
        raise QuantizeError(problems)
    progress(f"loading {run_dir} ({'EMA' if ema else 'raw'} weights)")
    run = load_run(run_dir, ema)
    problems = check_skips(run.model, list(skip))
    batches = _eval_batches(run, problems)
    if problems:
        raise QuantizeError(problems)

    task, fp32 = run.task, run.model
    progress(f"evaluating fp32 on {len(batches)} batches")
    ev = evaluate_batches(task, fp32, batches)
    fp32_value = ev.value(task.metric)
    spread = _spread(run, ev, fp32_value)
    linears = [n for n, m in fp32.named_modules() if isinstance(m, nn.Linear)]
    inputs = layer_inputs(fp32, linears, lambda m: task.metrics(m, batches[0]))
    layers = _layer_stats(run, fp32, inputs)
    suffix = "-ema" if ema else ""
    results, latency = [], {}
    for name in methods:
        progress(f"{name}: quantising, evaluating, saving")
        path = Path(out) if out is not None else run.run_dir / "quantized" / f"{name}{suffix}.safetensors"
        result, model = _one_method(run, name, set(skip), batches, ev, inputs, path)
        if model is not None:
            progress(f"{name}: timing CPU latency against fp32")
            latency = latencies({"fp32": fp32, name: model}, lambda m: task.metrics(m, batches[0]))
            result.latency_s = latency[name]
        results.append(result)
    verdict = Verdict(
        run_dir=str(run.run_dir), task=run.cfg.task.name, metric=task.metric,
        higher_is_better=task.higher_is_better, step=run.step, weights=run.weights,
        eval_batches=len(batches), threads=torch.get_num_threads(), fp32_value=fp32_value,
        fp32_file_bytes=_fp32_file_bytes(fp32), fp32_latency_s=latency.get("fp32", math.nan),
        spread=spread, methods=results, layers=layers, keep_full_precision=[],
    )
    verdict.keep_full_precision, verdict.largest_outlier = propose_skips(layers)
    write_json(run.run_dir / VERDICT_FILE, verdict.to_json())
    return verdict


def _eval_batches(run: LoadedRun, problems: list[str]) -> list[Any]:
    data = run.task.eval_data()
    if data is None:
        problems.append(f"task {run.cfg.task.name!r} has no evaluation split: nothing to judge the "
                        "quantised model by")
        return []
    train = run.cfg.train
    return list(eval_batches(data, run.task.collate, batch_size=train.eval_batch_size or train.batch_size,
                             max_batches=train.eval_batches))


def _spread(run: LoadedRun, ev: Any, fp32_value: float) -> Spread:
    metric = run.task.metric
    key = f"{'eval_ema' if run.weights == 'ema' else 'eval'}/{metric}"
    found = seed_spread(run, key, fp32_value)
    if found is not None:
        return found
    return Spread(bootstrap_std(ev, metric), "bootstrap", ev.batches,
                  f"bootstrap over the {ev.batches} evaluation batches; no sibling run with another "
                  "seed, so this is the evaluation's noise only, a lower bound on the seed spread")


def _one_method(run: LoadedRun, name: str, skip: set[str], batches: list[Any], fp32_ev: Evaluation,
                inputs: dict[str, torch.Tensor], path: Path) -> tuple[MethodResult, nn.Module | None]:
    task, fp32 = run.task, run.model
    applied = apply_method(fp32, METHODS[name], skip, lambda m: task.metrics(m, batches[0]))
    if applied.model is None:
        return MethodResult(name, False, why_not=applied.why_not), None
    q = applied.model.eval()
    ev = evaluate_batches(task, q, batches)
    value = ev.value(task.metric)
    result = MethodResult(name, True, config=applied.config, notes=applied.notes, value=value,
                          change=value - fp32_ev.value(task.metric), skipped=applied.kept, retied=applied.retied,
                          change_ci=paired_interval(ev, fp32_ev, task.metric))
    result.sqnr_db = layer_sqnr(fp32, q, {k: v for k, v in inputs.items() if k in applied.quantized})
    save_quantized(q, path, {"trainwell.quantize.method": name, "trainwell.quantize.config": applied.config,
                             "trainwell.step": str(run.step), "trainwell.weights": run.weights})
    result.file, result.file_bytes = str(path), path.stat().st_size
    torch.manual_seed(run.cfg.seed)
    fresh = load_quantized(path, task.build_model().float().eval())
    with torch.no_grad():
        a, b = task.metrics(q, batches[0]), task.metrics(fresh, batches[0])
    result.reloaded_identical = all(torch.equal(a[k][0], b[k][0]) for k in a)
    return result, q


def _fp32_file_bytes(model: nn.Module) -> int:
    """Size of the fp32 weights as ``trainwell export`` writes them (safetensors)."""
    from trainwell.checkpoint import export_weights

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.safetensors"
        export_weights(model.state_dict(), path)
        return path.stat().st_size


def _layer_stats(run: LoadedRun, model: nn.Module, inputs: dict[str, torch.Tensor]) -> list[LayerStats]:
    """Outliers per linear layer: the training-time measurement when the run recorded one
    (the outlier instrument), else measured now on the first evaluation batch."""
    from trainwell.instruments.outliers import last_measurement

    trained = last_measurement(run.run_dir)
    out = []
    for name, x in inputs.items():
        w_max_std, w_kurt = tail_stats(model.get_submodule(name).weight)
        row = trained.layers.get(name) if trained is not None else None
        if row is not None:
            out.append(LayerStats(name, row["in_max_std"], row["in_kurt"], w_max_std, w_kurt,
                                  f"training (step {trained.step})"))
        else:
            out.append(LayerStats(name, *tail_stats(x), w_max_std, w_kurt, "the first evaluation batch"))
    return out


def propose_skips(layers: list[LayerStats]) -> tuple[list[dict[str, str]], str]:
    """(layers whose outliers cross the bar, each with why; the largest input outlier in words)."""
    from trainwell.instruments.outliers import KURTOSIS_BAR, MAX_STD_BAR

    keep = []
    for s in layers:
        why = []
        if s.input_max_std > MAX_STD_BAR:
            why.append(f"input max/std {s.input_max_std:.1f} > {MAX_STD_BAR:g}")
        if s.weight_kurtosis > KURTOSIS_BAR:
            why.append(f"weight kurtosis {s.weight_kurtosis:.1f} > {KURTOSIS_BAR:g}")
        if why:
            keep.append({"layer": s.name, "why": "; ".join(why) + f" ({s.source})"})
    finite = [s for s in layers if math.isfinite(s.input_max_std)]
    top = max(finite, key=lambda s: s.input_max_std, default=None)
    largest = (f"no layer's input max/std above {MAX_STD_BAR:g} nor weight kurtosis above {KURTOSIS_BAR:g}; the "
               f"largest input max/std is {top.input_max_std:.1f} at {top.name}" if top else "no layer measured")
    return keep, largest
