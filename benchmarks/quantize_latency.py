"""CPU latency of torchao's quantised models against fp32, measured in one interleaved run.

Each workload is quantised with the methods ``trainwell quantize`` offers; per round every
model runs one forward (no grad, eval mode) in a rotating order, so a machine that slows
down mid-way slows all of them. Reported per model: the fastest and the median forward in
ms, and the median over rounds of the ratio fp32 / model measured within the same round
(> 1: faster than fp32).

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize_latency.py
    PYTHONPATH=src .venv/bin/python benchmarks/quantize_latency.py --workloads gpt-default --rounds 15
    PYTHONPATH=src .venv/bin/python benchmarks/quantize_latency.py --compile   # every model torch.compile'd

``--compile`` compiles every model, fp32 included, before timing: torchao's int8 kernels on a
CPU are written for inductor (eager, int8-dynamic quantises activations op by op).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from trainwell.models.gpt import GPT
from trainwell.quantize.methods import METHODS, apply_method


def _gpt(width: int, depth: int, heads: int, batch: int, seq: int = 128) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = GPT(256, seq, width=width, depth=depth, heads=heads, zero_init_residual=False)
    return model, torch.randint(0, 256, (batch, seq))  # (B, T) byte ids


def _mlp() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)), torch.randn(64, 1024)


WORKLOADS: dict[str, tuple[str, Callable[[], tuple[nn.Module, torch.Tensor]]]] = {
    "gpt-default": ("the default bytes-lm GPT (width 128, depth 4), its eval batch 32 x 128",
                    lambda: _gpt(128, 4, 4, 32)),
    "gpt-default-b1": ("the same GPT, one sequence of 128 bytes", lambda: _gpt(128, 4, 4, 1)),
    "gpt-w512": ("a wider GPT (width 512, depth 4, 8 heads, 12.7M params), batch 8 x 128",
                 lambda: _gpt(512, 4, 8, 8)),
    "mlp-1024": ("MLP 1024 -> 4096 -> 1024, batch 64", _mlp),
}


def measure(name: str, rounds: int, methods: list[str], compile: bool = False) -> None:
    what, build = WORKLOADS[name]
    model, x = build()
    model.eval()
    models = {"fp32": model}
    for m in methods:
        applied = apply_method(model, METHODS[m], set(), lambda q, x=x: q(x))
        if applied.model is None:
            print(f"  {m}: not available here: {applied.why_not}")
            continue
        models[m] = applied.model.eval()
    if compile:
        models = {k: torch.compile(m) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    names = list(models)
    with torch.no_grad():
        for k in names:
            for _ in range(2 if compile else 1):
                models[k](x)  # warm-up (and compilation)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                t0 = time.perf_counter()
                models[k](x)
                times[k].append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    print(f"\n{name}: {what}; {params / 1e6:.2f}M params; load {os.getloadavg()[0]:.1f}"
          + ("; every model torch.compile'd" if compile else ""))
    print(f"  {'model':14s} {'min ms':>9s} {'median ms':>10s} {'fp32/model':>11s}")
    for k in names:
        ratios = [f / t for f, t in zip(times["fp32"], times[k], strict=True)]
        print(f"  {k:14s} {1e3 * min(times[k]):9.2f} {1e3 * statistics.median(times[k]):10.2f} "
              f"{statistics.median(ratios):10.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--compile", action="store_true", help="torch.compile every model (fp32 too) before timing")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the tests' and the CLI's setting here)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, "
          f"cpu: {_cpu_name()}; load {os.getloadavg()[0]:.1f}")
    for w in args.workloads:
        measure(w, args.rounds, args.methods, args.compile)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
