"""``trainwell profile [CONFIG.toml] [--set KEY=VALUE ...] [--steps N] [--warmup N]``.

Runs a few training steps of the configured run under torch.profiler (after a warm-up, so
that one-off costs such as allocation, lazy initialisation and torch.compile stay out),
writes a Chrome trace to ``<run dir>/profile/trace.json`` (open it in https://ui.perfetto.dev
or chrome://tracing) and prints the operators that took the most self time, on the CPU and,
on a GPU, on the device. "Use a profiler" before guessing where the time goes.

What is profiled is the step itself (data, forward, backward, clipping, optimizer), built
from the same pieces as the loop; guards, sinks and checkpoints are not in it (their cost
over a hand-written loop is measured by benchmarks/overhead.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainwell.cli.train_cmd import add_config_args

DEFAULT_STEPS = 5
"""Profiled steps: enough to see every operator of a step several times and the variation
between steps; the trace of a large model stays a few MB."""
DEFAULT_WARMUP = 3
"""Steps before profiling: the first step allocates memory and initialises the optimizer
state, the second still warms caches; torch.compile may need a few more (use --warmup)."""
DEFAULT_TOP = 15
"""Rows of the printed table: the operators that matter are nearly always in the first ten."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="profile a few training steps with torch.profiler: a Chrome trace and the top operators",
    )
    add_config_args(p)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                   help=f"steps to profile after the warm-up (default {DEFAULT_STEPS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="N",
                   help=f"steps before profiling starts (default {DEFAULT_WARMUP})")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="K",
                   help=f"operators to show (default {DEFAULT_TOP})")
    p.add_argument("--run-dir", help="where to write (default runs/<task>-profile-<timestamp>/)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.errors import ConfigError

    problems = [f"--{name} must be >= {low}, got {value}"
                for name, value, low in (("steps", args.steps, 1), ("warmup", args.warmup, 0), ("top", args.top, 1))
                if value < low]
    if problems:
        raise ConfigError(problems)
    cfg = load_config(args.config, args.overrides)
    result = profile_steps(cfg, steps=args.steps, warmup=args.warmup, run_dir=args.run_dir, top=args.top)
    print(result.summary())
    return 0


@dataclass(frozen=True)
class OpTime:
    """One operator's totals over the profiled steps (times in milliseconds)."""

    name: str
    calls: int
    self_cpu_ms: float
    cpu_total_ms: float
    self_device_ms: float


@dataclass(frozen=True)
class ProfileResult:
    profile_dir: Path
    trace: Path
    steps: int
    step_ms: list[float]
    """Wall time of each step timed without the profiler (after the warm-up)."""
    profiled_step_ms: list[float]
    """Wall time of each profiled step (the profiler adds its own overhead)."""
    ops: list[OpTime]
    """The top operators by self CPU time (and, on a GPU, ``ops_device`` by device time)."""
    ops_device: list[OpTime]
    table: str

    def summary(self) -> str:
        return (
            f"step time: median {statistics.median(self.step_ms):.2f} ms without the profiler, "
            f"{statistics.median(self.profiled_step_ms):.2f} ms profiled ({self.steps} steps)\n"
            f"{self.table}\ntrace: {self.trace} (open in https://ui.perfetto.dev or chrome://tracing)"
        )


def profile_steps(
    cfg: Any, *, steps: int = DEFAULT_STEPS, warmup: int = DEFAULT_WARMUP,
    run_dir: str | Path | None = None, top: int = DEFAULT_TOP,
) -> ProfileResult:
    """Warm up, time ``steps`` plain steps, then profile ``steps`` more; write the trace and
    the table to ``<run dir>/profile/``. ``cfg`` is a RunConfig."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from trainwell.tasks import build_task
    from trainwell.train.flight import build_state, resolve_device
    from trainwell.train.probe import FinalActivationProbe
    from trainwell.train.rng import seed_everything
    from trainwell.train.rundir import make_run_dir
    from trainwell.train.step import apply_update, compute_update, skip_update

    seed_everything(cfg.seed)
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = build_task(cfg)
    st = build_state(cfg, task, device)
    probe = FinalActivationProbe(st.model)  # as in the loop: part of a step's cost
    cuda = device.type == "cuda"

    def step() -> float:
        t0 = time.perf_counter()
        micro = st.loader.next()
        record, out = compute_update(st, task, micro, max_norm=cfg.clip.max_norm, probe=probe,
                                     data_time=time.perf_counter() - t0, t_start=t0)
        st.iteration += 1
        if record.applied:
            apply_update(st, out.lr_factor)
        else:  # an fp16 overflow: the loop would skip it too
            skip_update(st)
        if cuda:
            torch.cuda.synchronize(device)  # so that the wall time covers the device's work
        return (time.perf_counter() - t0) * 1e3

    try:
        for _ in range(warmup):
            step()
        plain = [step() for _ in range(steps)]
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        profiled = []
        with profile(activities=activities) as prof:
            for i in range(steps):
                with record_function(f"train_step_{i}"):
                    profiled.append(step())
    finally:
        probe.close()

    out = make_run_dir(run_dir, f"{cfg.task.name}-profile") / "profile"
    out.mkdir(parents=True, exist_ok=True)
    trace = out / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = [e for e in prof.key_averages() if not e.key.startswith(("train_step_", "ProfilerStep"))]
    ops = [_op(e) for e in events]
    by_cpu = sorted(ops, key=lambda o: o.self_cpu_ms, reverse=True)[:top]
    by_device = sorted(ops, key=lambda o: o.self_device_ms, reverse=True)[:top] if cuda else []
    table = format_table(by_cpu, "self CPU", steps, sum(o.self_cpu_ms for o in ops))
    if cuda:
        table += "\n\n" + format_table(by_device, "self CUDA", steps, sum(o.self_device_ms for o in ops))
    (out / "top_ops.txt").write_text(table + "\n")
    (out / "config.toml").write_text(cfg.to_toml())
    return ProfileResult(out, trace, steps, plain, profiled, by_cpu, by_device, table)


def _op(e: Any) -> OpTime:
    # torch >= 2.4 names device time "device"; older releases "cuda"
    self_device = getattr(e, "self_device_time_total", None)
    if self_device is None:
        self_device = getattr(e, "self_cuda_time_total", 0.0)
    return OpTime(
        name=e.key,
        calls=int(e.count),
        self_cpu_ms=e.self_cpu_time_total / 1e3,  # the profiler counts microseconds
        cpu_total_ms=e.cpu_time_total / 1e3,
        self_device_ms=float(self_device) / 1e3,
    )


def format_table(ops: list[OpTime], by: str, steps: int, total_ms: float) -> str:
    """A compact table: operator, calls per step, self time per step, and its share of the
    self time of all operators (``total_ms``)."""
    device = by == "self CUDA"
    values = [o.self_device_ms if device else o.self_cpu_ms for o in ops]
    total = total_ms or 1.0
    width = max([len("operator")] + [min(len(o.name), 48) for o in ops])
    lines = [f"top operators by {by} time (per step, over {steps} profiled steps)",
             f"{'operator':<{width}}  {'calls':>6}  {by + ' ms':>13}  {'share':>6}"]
    for o, v in zip(ops, values, strict=True):
        name = o.name if len(o.name) <= 48 else o.name[:45] + "..."
        lines.append(f"{name:<{width}}  {o.calls / steps:>6.1f}  {v / steps:>13.3f}  {v / total:>6.1%}")
    return "\n".join(lines)
