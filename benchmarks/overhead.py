"""What does trainwell cost over the loop you would write by hand?

The same workload runs as separate processes, interleaved round by round so that drift of
a shared machine cancels:

  plain      a hand-written PyTorch loop with the same features: AdamW (betas and weight
             decay from the config, no decay on biases/gains/embeddings; torch's fused kernel,
             as trainwell picks), warmup-cosine,
             global-norm clipping, accumulation normalised by the total target count, and
             the sample ids trainwell's ResumableSampler draws (so the losses must agree)
  trainwell  trainwell.train.loop.run with the defaults (guards on, the minimal instruments
             every 16 steps, metrics.jsonl and TensorBoard every log.every steps) but no
             checkpoint inside the timed window
  notb       the same with log.tensorboard=false
  economy    the same with instruments.preset=economy (Cockpit's economy set, every 16 steps)
  ckpt       the same with a checkpoint cadence that saves inside the timed window
  ckpt_async the same with checkpoint.async_save=true (the loop waits for a CPU snapshot only)
  noinst, bare  (only on request, for attribution) instruments off; and instruments, guards
             and TensorBoard off together
  plain_torch  (on request) the plain loop with AdamW as torch builds it by default (on a
             CPU a Python loop over the tensors): what trainwell's choice of kernel saves
  noguards   (on request) the defaults with guards.enabled=false: trainwell/noguards is the
             stability autopilot's cost (goal <= 1.01 on the MLP and GPT)

Each process times the steps itself (wall and CPU time at every iteration's sampler draw),
leaving out start-up and the first ``warmup`` steps; a save's own cost is the excess of the
step interval that holds it over the median interval.
Evaluation runs only after the last step (train.eval_every=0): the plain loop has none.

    PYTHONPATH=src python benchmarks/overhead.py                  # probe, mlp, gpt; 5 runs
    PYTHONPATH=src python benchmarks/overhead.py --quick --workloads probe

Process against process, this shared machine drifts by 10-20% between runs, more than the
1-3% the goals are about. ``--lockstep`` runs the setups in ONE process instead, one thread
each, taking turns of a few steps (benchmarks/lockstep.py): the paired ratio per round
resolves about 0.5% (an A/A run, the same setup twice, is the check; RESULTS.md gives it):

    PYTHONPATH=src python benchmarks/overhead.py --lockstep --workloads mlp --setups trainwell,trainwell
    PYTHONPATH=src python benchmarks/overhead.py --lockstep --workloads mlp,probe --setups trainwell,noguards

One thread per process by default: on a shared 2-core machine, two OpenMP threads per
process against other jobs make tiny steps 10x slower and far noisier (measured while
writing this); recorded results and their commands are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainwell.config import RunConfig, load_config
from trainwell.data.sampler import ResumableSampler
from trainwell.data.tensor_rows import TensorRows
from trainwell.tasks import build_task
from trainwell.tasks.base import LossOutput, Task

MARK = "OVERHEAD-RESULT "
LOSS_RTOL = 1e-5
"""Identical workloads must give identical losses; more than this relative gap is flagged."""


@dataclass(frozen=True)
class Workload:
    help: str
    overrides: tuple[str, ...]
    steps: int
    warmup: int
    """Steps left out of the timing (allocator and cache warm-up)."""
    ckpt_every: int
    """checkpoint.every_steps of the ckpt setup: saves land inside the timed window."""
    setups: tuple[str, ...]
    quick: tuple[int, int, int]
    """(steps, warmup, ckpt_every) with --quick."""


SETUPS = ("plain", "plain_torch", "trainwell", "notb", "economy", "ckpt", "ckpt_async", "noinst", "bare", "noguards")

COMMON = ("train.eval_every=0", "log.sample_chars=0", "checkpoint.every_steps=0",
          "checkpoint.every_minutes=0")
"""Evaluation only after the last step (the plain loop has none); no checkpoint inside the
timed window except in the ckpt setup, so that ckpt/trainwell isolates their cost."""
WORKLOADS: dict[str, Workload] = {
    "probe": Workload(
        "one Linear(32, 32), batch 8: the fixed cost of a step",
        ("task.name=overhead:probe_task", "train.batch_size=8", "schedule.warmup_steps=20"),
        steps=3000, warmup=300, ckpt_every=1000, setups=("plain", "trainwell", "notb"),
        quick=(400, 50, 100),
    ),
    "mlp": Workload(
        "digits MLP (task defaults: depth 2, width 128), batch 64 in 2 micro-batches",
        ("task.name=digits", "train.accumulate=2"),
        # 3x the task's 400 steps, for a timed window long enough to be steady (the
        # autopilot makes no intervention at this length: tests/guards/test_fault_recovery.py)
        steps=1200, warmup=100, ckpt_every=400,
        setups=("plain", "trainwell", "economy", "ckpt", "ckpt_async"),
        quick=(150, 20, 50),
    ),
    "gpt": Workload(
        "bytes-lm GPT (task defaults: depth 4, width 128), seq_len 64, batch 8 in 2 micro-batches",
        ("task.name=bytes-lm", "task.seq_len=64", "train.batch_size=8", "train.accumulate=2",
         "train.eval_batches=1", "schedule.warmup_steps=10"),
        steps=120, warmup=20, ckpt_every=40, setups=("plain", "trainwell", "economy", "ckpt"),
        quick=(30, 5, 10),
    ),
}


# ---------------------------------------------------------------- the probe task


class ProbeTask(Task):
    """Fit pure noise with one small Linear layer: almost no compute, so a step is its fixed
    cost. Noise targets and a zero start keep the loss flat (~1 per output), so the
    guards have nothing to act on: the run is the healthy run they cost on."""

    name, metric, unit = "probe", "loss", "samples"

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self._data = TensorRows(torch.randn(512, 32, generator=g),  # (N, 32) inputs
                                torch.randn(512, 32, generator=g))  # (N, 32) noise targets

    def build_model(self) -> nn.Module:
        model = nn.Linear(32, 32)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        return model

    def train_data(self) -> TensorRows:
        return self._data

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch  # (B, 32), (B, 32)
        per_sample = (model(x) - y).pow(2).mean(dim=1)  # (B,)
        # the count as a host number, as every built-in task gives it (LossOutput.count's
        # cheap form); until 2026-11-29 a tensor, which added ~6 device ops to trainwell's step
        return LossOutput(per_sample.sum(), float(len(y)), {}, per_sample)


def probe_task(cfg: RunConfig) -> Task:
    return ProbeTask()


class StepClock:
    """Notes the wall and CPU time at every ResumableSampler.draw: both loops draw once per
    iteration, at its start, and nothing else draws from it (instruments and evaluation
    call task.loss on their own, so the loss cannot be the clock). Installed in the child
    process only; its cost (about a microsecond) is the same on both sides."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        """CPU time of the process (all its threads): less sensitive to other jobs' load."""

    def install(self) -> None:
        draw = ResumableSampler.draw

        def timed_draw(sampler: ResumableSampler, count: int) -> Any:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())
            return draw(sampler, count)

        ResumableSampler.draw = timed_draw  # type: ignore[method-assign]


# ---------------------------------------------------------------- (a) the plain loop


def plain_loop(cfg: RunConfig, task: Task, targets_per_sample: int, fused: bool = True) -> dict[int, float]:
    """What a practitioner writes by hand (nanoGPT-style), with trainwell's features.
    ``fused`` False: AdamW as torch builds it by default (on a CPU a Python loop over the
    tensors; other rounding, so other losses)."""
    random.seed(cfg.seed)  # seeded as trainwell seeds, so the initial weights are the same
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    model = task.build_model()
    model.train()
    # weight decay on matrices only: not on biases, norm gains or embedding tables
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2 and id(p) not in emb]
    no_decay = [p for p in params if not (p.ndim >= 2 and id(p) not in emb)]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel, as trainwell picks on a CPU (torch's default there is a Python loop
    # over the tensors, 3x slower on this MLP): the same arithmetic, so the same losses
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.optim.lr,
                            betas=cfg.optim.betas, eps=cfg.optim.eps, **({"fused": True} if fused else {}))
    total, warm = cfg.train.steps, cfg.schedule.warmup_steps
    floor = cfg.schedule.min_lr_ratio

    def lr_factor(step: int) -> float:  # linear warmup, then cosine down to the floor
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / (total - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    data = task.train_data()
    sampler = ResumableSampler(len(data), seed=cfg.seed)
    batch, k = cfg.train.batch_size, cfg.train.accumulate
    targets = float(batch * targets_per_sample)  # normalise by all targets of the update
    losses: dict[int, float] = {}
    for step in range(total):
        for group in opt.param_groups:
            group["lr"] = cfg.optim.lr * lr_factor(step)
        loss_sum = torch.zeros(())
        for ids in sampler.draw(batch).split(batch // k):
            out = task.loss(model, data.get_batch(ids))
            (out.sum / targets).backward()
            loss_sum += out.sum.detach()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip.max_norm, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % cfg.log.every == 0 or step == 0:
            losses[step + 1] = (loss_sum / targets).item()
    return losses


# ---------------------------------------------------------------- one process


def prepare(workload: str, setup: str, steps: int, ckpt_every: int, threads: int) -> tuple[RunConfig, Task]:
    wl = WORKLOADS[workload]
    extra = {"notb": ["log.tensorboard=false"], "economy": ["instruments.preset=economy"],
             "noinst": ["instruments.preset=off"], "noguards": ["guards.enabled=false"],
             "bare": ["log.tensorboard=false", "instruments.preset=off", "guards.enabled=false"],
             "ckpt": [f"checkpoint.every_steps={ckpt_every}"],
             "ckpt_async": [f"checkpoint.every_steps={ckpt_every}", "checkpoint.async_save=true"],
             }.get(setup, [])
    overrides = [*COMMON, *wl.overrides, f"train.steps={steps}", f"train.threads={threads}", *extra]
    cfg = load_config(None, overrides, check_task=False)
    task = ProbeTask() if workload == "probe" else build_task(cfg)
    return cfg, task


def train(cfg: RunConfig, task: Task, setup: str) -> tuple[dict[int, float], int]:
    """Run one setup to the end: (logged losses by step, the autopilot's skips)."""
    from trainwell.train.loop import run

    if setup in ("plain", "plain_torch"):
        per_token = cfg.task.seq_len if task.unit == "tokens" else 1
        return plain_loop(cfg, task, per_token, fused=setup == "plain"), 0
    with tempfile.TemporaryDirectory(prefix="tw-overhead-") as d:
        result = run(cfg, task=task, run_dir=Path(d) / "run", progress=False)
        summary = json.loads((Path(d) / "run" / "summary.json").read_text())
    losses = {int(h["step"]): h["train/loss"] for h in result.history if "train/loss" in h}
    return losses, int(summary["autopilot"]["guard/skips"])


def run_one(workload: str, setup: str, steps: int, warmup: int, ckpt_every: int, threads: int) -> dict:
    cfg, task = prepare(workload, setup, steps, ckpt_every, threads)
    clock = StepClock()
    clock.install()
    losses, skips = train(cfg, task, setup)
    t, cpu = clock.wall, clock.cpu  # t[i]: start of iteration i + 1; a save after step s: before t[s]
    if len(t) != steps:
        raise RuntimeError(f"{workload}/{setup}: {len(t)} batches drawn for {steps} steps (a rollback?)")
    timed = steps - 1 - warmup
    saving = setup.startswith("ckpt")
    save_steps = [s for s in range(warmup + 1, steps) if s % ckpt_every == 0] if saving else []
    # a save after step s lies between t[s - 1] and t[s]: its cost is that interval's excess
    usual = statistics.median(b - a for a, b in zip(t[warmup:], t[warmup + 1 : steps], strict=False))
    save_ms = [((t[s] - t[s - 1]) - usual) * 1e3 for s in save_steps]
    return {"workload": workload, "setup": setup, "ms_per_step": (t[steps - 1] - t[warmup]) / timed * 1e3,
            "cpu_ms_per_step": (cpu[steps - 1] - cpu[warmup]) / timed * 1e3, "timed_steps": timed,
            "saves_timed": len(save_steps), "save_ms": save_ms, "skips": skips, "losses": losses,
            "params": sum(p.numel() for p in task.build_model().parameters())}


def run_lockstep(workload: str, labels: list[str], steps: int, ckpt_every: int, threads: int,
                 block: int, turn: int) -> dict:
    """Every setup in ``labels`` in this process, in lockstep (benchmarks/lockstep.py).
    A label is a setup, or setup.N for the same setup again (the A/A null run), with #2 for
    its second copy."""
    from lockstep import Lockstep

    setups = [label.partition("#")[0].partition(".")[0] for label in labels]
    prepared = [prepare(workload, setup, steps, ckpt_every, threads) for setup in setups]
    lock = Lockstep(len(labels), block, turn)
    lock.install()
    bodies = [functools.partial(train, cfg, task, setup) for (cfg, task), setup in zip(prepared, setups, strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):  # the loops' own log lines
        results = lock.run(bodies)
    for label, wall in zip(labels, lock.wall, strict=True):
        if len(wall) != steps - 1:
            raise RuntimeError(f"{workload}/{label}: {len(wall) + 1} batches drawn for {steps} steps (a rollback?)")
    return {"workload": workload, "labels": labels, "block": block, "turn": turn, "wall": lock.wall, "cpu": lock.cpu,
            "first": lock.first, "losses": [r[0] for r in results], "skips": [r[1] for r in results],
            "params": sum(p.numel() for p in prepared[0][1].build_model().parameters())}


# ---------------------------------------------------------------- the parent

PAIRS = [("trainwell", "plain", 1.03, 0.05), ("notb", "plain", None, None), ("economy", "trainwell", None, None),
         ("ckpt", "trainwell", 1.02, None), ("ckpt_async", "trainwell", 1.02, None),
         ("noinst", "trainwell", None, None), ("bare", "plain", None, None),
         ("trainwell", "noguards", 1.01, None),  # the autopilot's own cost
         ("trainwell", "plain_torch", None, None)]  # against a hand loop with torch's default AdamW
"""(setup, baseline, goal on the wall-time ratio, goal on the extra wall ms per step of the
probe); the ratio goals are for the other workloads, the probe's goal is in milliseconds."""


def load() -> float:
    return os.getloadavg()[0]


def wait_for_load(limit: float, max_wait: float) -> float:
    end = time.monotonic() + max_wait
    while load() > limit and time.monotonic() < end:  # other jobs on a shared machine
        time.sleep(15)
    return load()


def spread(xs: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def child(args: argparse.Namespace, workload: str, spec: str, plan: tuple[int, int, int]) -> dict:
    """One run in a fresh process. ``spec`` is a setup, or TREE:setup to run it with the
    trainwell of another checkout named by --tree (an A/B of a change to trainwell)."""
    tree, _, setup = spec.rpartition(":")
    cmd = [sys.executable, __file__, "--one", setup, "--workloads", workload, "--threads",
           str(args.threads), "--plan", ",".join(map(str, plan))]
    root = Path(args.trees[tree]) if tree else Path(__file__).resolve().parents[1]
    src = root / "src"  # that checkout's trainwell (this one's by default)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(MARK)]
    if out.returncode != 0 or not lines:
        sys.exit(f"{workload}/{spec} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def plan(args: argparse.Namespace, wl: Workload) -> tuple[int, int, int]:
    """(steps, warmup, ckpt_every) of a workload's runs: its own, --quick's, and --steps."""
    steps, warmup, ckpt_every = wl.quick if args.quick else (wl.steps, wl.warmup, wl.ckpt_every)
    # longer runs resolve more blocks (the GPT's 120 steps give 8)
    return (args.steps or steps), warmup, ckpt_every


def bench(args: argparse.Namespace, name: str) -> dict:
    wl = WORKLOADS[name]
    steps, warmup, ckpt_every = plan(args, wl)
    setups = list(wl.setups) if args.setups is None else args.setups.split(",")
    load_before = wait_for_load(args.max_load, args.wait) if not args.quick else load()
    runs: dict[str, list[dict]] = {s: [] for s in setups}
    for r in range(args.runs):  # interleaved: each round runs every setup, in a rotating order
        for setup in setups[r % len(setups):] + setups[: r % len(setups)]:
            runs[setup].append(child(args, name, setup, (steps, warmup, ckpt_every)))
    res = {"workload": name, "help": wl.help, "steps": steps, "warmup": warmup,
           "ckpt_every": ckpt_every, "load_before": load_before, "load_after": load(), "runs": runs}
    report(res)
    return res


def bench_lockstep(args: argparse.Namespace, name: str) -> dict:
    """--lockstep: each of --runs processes runs every setup in lockstep; the first round's
    order rotates from one process to the next."""
    import lockstep

    wl = WORKLOADS[name]
    steps, warmup, ckpt_every = plan(args, wl)
    specs = args.setups.split(",") if args.setups else ["plain", "trainwell"]
    labels = [s if specs[:i].count(s) == 0 else f"{s}.{specs[:i].count(s) + 1}" for i, s in enumerate(specs)]
    load_before = wait_for_load(args.max_load, args.wait) if not args.quick else load()
    results = []
    for r in range(args.runs):
        # two copies of each setup, built in mirrored order (A B B#2 A#2): which loop is set up
        # first moved a process's A/A ratio by 1-2% (memory placement); rotated per process
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        order += [f"{lab}#2" for lab in reversed(order)]
        cmd = [sys.executable, __file__, "--lockstep-one", ",".join(order), "--workloads", name,
               "--threads", str(args.threads), "--plan", f"{steps},{warmup},{ckpt_every},{args.block},{args.turn}"]
        src = Path(__file__).resolve().parents[1] / "src"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith(MARK)]
        if out.returncode != 0 or not lines:
            sys.exit(f"{name}/lockstep {order} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        results.append(json.loads(lines[-1][len(MARK):]))
    print(f"\n== {name} (lockstep, {args.runs} processes, 2 copies of each setup): {wl.help}; {results[0]['params']:,} parameters; "
          f"{steps} steps, the first {warmup} not timed; turns of {args.turn} steps, the order rotates "
          f"every {args.block} rounds; "
          f"1-min load {load_before:.2f} before, {load():.2f} after")
    known = [(a, b) for a, b, _, _ in PAIRS if a in labels and b in labels]
    twins = [(f"{s}.2", s) for s in dict.fromkeys(specs) if f"{s}.2" in labels]  # the A/A null
    pairs = twins + known or [(lab, labels[0]) for lab in labels[1:]]
    for line in lockstep.describe(results, pairs, warmup):
        print(line)
    runs = {lab: [{"losses": {str(k): v for k, v in r["losses"][r["labels"].index(lab)].items()},
                   "skips": r["skips"][r["labels"].index(lab)]} for r in results] for lab in results[0]["labels"]}
    check_losses(runs, reference="plain" if "plain" in runs else labels[0])
    return {"workload": name, "lockstep": True, "steps": steps, "warmup": warmup, "load_before": load_before,
            "load_after": load(), "results": results}


def report(res: dict) -> None:
    runs, name = res["runs"], res["workload"]
    first = next(iter(runs.values()))[0]
    print(f"\n== {name}: {res['help']}; {first['params']:,} parameters; {res['steps']} steps, "
          f"the first {res['warmup']} not timed; 1-min load {res['load_before']:.2f} before, "
          f"{res['load_after']:.2f} after")
    wall = {s: [r["ms_per_step"] for r in rs] for s, rs in runs.items()}
    cpu = {s: [r["cpu_ms_per_step"] for r in rs] for s, rs in runs.items()}
    print(f"  {'setup':<16} {'wall ms/step: median (min-max)':<32} {'CPU ms/step':<26} final loss")
    for s in runs:
        note = f"  ({runs[s][0]['saves_timed']} saves timed, every {res['ckpt_every']} steps)" if s.startswith("ckpt") else ""
        last = runs[s][0]["losses"][str(max(map(int, runs[s][0]["losses"])))]
        print(f"  {s:<16} {spread(wall[s]):<32} {spread(cpu[s]):<26} {last:.8g}{note}")
    _report_pairs(runs, name, wall, cpu)
    for s in runs:
        if ":" in s and "plain" in runs and not s.endswith((":trainwell", ":noguards")):  # others: vs plain
            extra = [x - y for x, y in zip(wall[s], wall["plain"], strict=True)]
            ratios = [x / y for x, y in zip(wall[s], wall["plain"], strict=True)]
            print(f"  {s}/plain: wall ratio {spread(ratios)}, extra {spread(extra, '{:+.4f}')} ms")
    _report_ab(runs, wall, cpu)
    for s in ("ckpt", "ckpt_async"):
        if s not in runs or not runs[s][0]["saves_timed"]:
            continue
        save = [x for r in runs[s] for x in r["save_ms"]]
        base = statistics.median(wall.get("trainwell", wall[s]))
        share = statistics.median(save) / (500 * base)
        print(f"  {s}: one save blocks {spread(save, '{:.1f}')} ms ({len(save)} saves: the step "
              f"interval holding it minus the median interval); at the default cadence "
              f"(every_steps=500) that is {share:+.2%} per step")
    check_losses(runs)


def _report_pairs(runs: dict, name: str, wall: dict, cpu: dict) -> None:
    """Each pair of setups (trainwell/plain, ...) against its goal."""
    probe = name == "probe"
    pairs = [(a, b, None if probe else r, m if probe else None) for a, b, r, m in PAIRS]
    trees = sorted({s.rpartition(":")[0] + ":" for s in runs if ":" in s})
    # the same pairs within each other tree (TREE:trainwell/TREE:noguards; TREE:x/plain)
    pairs += [(t + a, b if b == "plain" else t + b, r, m) for t in trees for a, b, r, m in pairs]
    for a, b, ratio_goal, ms_goal in pairs:
        if a not in runs or b not in runs:
            continue
        line = f"  {a}/{b}:"
        for label, m in (("wall", wall), ("CPU", cpu)):
            ratios = [x / y for x, y in zip(m[a], m[b], strict=True)]  # paired within a round
            extra = [x - y for x, y in zip(m[a], m[b], strict=True)]
            line += f" {label} ratio {spread(ratios)}, extra {spread(extra, '{:+.4f}')} ms;"
            if label == "wall" and ratio_goal is not None:
                met = statistics.median(ratios) <= ratio_goal
                goal = f"goal ratio <= {ratio_goal:.2f}: {'met' if met else 'MISSED'}"
            elif label == "wall" and ms_goal is not None:
                met = statistics.median(extra) <= ms_goal
                goal = f"goal <= +{ms_goal:.2f} ms: {'met' if met else 'MISSED'}"
            elif label == "wall":
                goal = ""
        print(line + (f" {goal} (wall)" if goal else ""))


def _report_ab(runs: dict, wall: dict, cpu: dict) -> None:
    """The same setup from two trees: an A/B of a change."""
    by_setup: dict[str, list[str]] = {}
    for s in runs:
        by_setup.setdefault(s.rpartition(":")[2], []).append(s)
    for names in by_setup.values():  # the same setup from two trees: an A/B of a change
        for a, b in itertools.combinations(names, 2):
            line = f"  A/B {a} vs {b}:"
            for label, m in (("wall", wall), ("CPU", cpu)):
                ratios = [x / y for x, y in zip(m[a], m[b], strict=True)]
                extra = [x - y for x, y in zip(m[a], m[b], strict=True)]
                line += f" {label} ratio {spread(ratios)}, extra {spread(extra, '{:+.4f}')} ms;"
            print(line)


def check_losses(runs: dict[str, list[dict]], reference: str = "plain") -> None:
    """Every setup trains the same model on the same data as the reference (the plain loop)."""
    if reference not in runs:
        return
    ref = runs[reference][0]["losses"]
    for s, rs in runs.items():
        if s == reference:
            continue
        if s.partition("#")[0].endswith("plain_torch"):
            print(f"  losses {s}: not compared (another AdamW kernel rounds otherwise, and training amplifies it)")
            continue
        worst, n = 0.0, 0
        for r in rs:
            for step, v in r["losses"].items():
                if step in ref:
                    worst = max(worst, abs(v - ref[step]) / max(abs(ref[step]), 1e-12))
                    n += 1
        skips = sum(r["skips"] for r in rs)
        flag = "OK" if worst <= LOSS_RTOL and n and not skips else "MISMATCH"
        print(f"  losses {s} vs {reference}: max relative difference {worst:.2e} over {n} logged values"
              f"{f', {skips} guard skips' if skips else ''}: {flag}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="probe,mlp,gpt", help="comma-separated: " + ", ".join(WORKLOADS))
    ap.add_argument("--setups", help="comma-separated setups to run instead of each workload's own "
                    "list: " + ", ".join(SETUPS))
    ap.add_argument("--runs", type=int, default=5, help="runs per setup (>= 4 to quote)")
    ap.add_argument("--quick", action="store_true", help="short runs, 2 rounds: a smoke test")
    ap.add_argument("--steps", type=int, help="steps per run instead of the workload's own")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (see the docstring)")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for the 1-min load to drop below this")
    ap.add_argument("--wait", type=float, default=300.0, help="at most this many seconds of waiting per workload")
    ap.add_argument("--json", type=Path, help="also write every run's numbers here")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                    help="another checkout, for setups written NAME:setup (A/B of a change)")
    ap.add_argument("--lockstep", action="store_true", help="run the setups in one process, taking "
                    "turns step by step (benchmarks/lockstep.py): resolves ~0.5%%; one process per --runs")
    ap.add_argument("--block", type=int, default=10, help="--lockstep: rounds per block (the order of "
                    "the setups rotates every block; the spread is over blocks)")
    ap.add_argument("--turn", type=int, default=7, help="--lockstep: steps a setup runs before it hands "
                    "over (the first is not timed); keep it coprime with 10 and 16")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--lockstep-one", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        steps, warmup, ckpt_every = map(int, args.plan.split(","))
        res = run_one(args.workloads, args.one, steps, warmup, ckpt_every, args.threads)
        print(MARK + json.dumps(res), flush=True)
        return
    if args.lockstep_one:
        steps, warmup, ckpt_every, block, turn = map(int, args.plan.split(","))
        res = run_lockstep(args.workloads, args.lockstep_one.split(","), steps, ckpt_every, args.threads, block, turn)
        print(MARK + json.dumps(res), flush=True)
        return
    if args.quick and args.runs == 5:
        args.runs = 2
    if args.runs < 4 and not args.quick:
        ap.error("--runs must be >= 4 for figures worth quoting (or use --quick)")
    args.trees = dict(t.partition("=")[::2] for t in args.tree)
    specs = [s for s in (args.setups or "").split(",") if s]
    bad = [s for s in specs if s.rpartition(":")[2] not in SETUPS or
           (":" in s and s.rpartition(":")[0] not in args.trees)]
    if bad:
        ap.error(f"unknown setup {bad}; valid: {', '.join(SETUPS)}, each optionally prefixed "
                 "by TREE: for a --tree TREE=PATH")
    names = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload {unknown}; valid: {', '.join(WORKLOADS)}")
    print(f"trainwell overhead benchmark, {time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, {args.threads} thread(s) per process, {args.runs} runs per setup")
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    if args.lockstep and (args.trees or not specs or any(s.rpartition(":")[2] != s for s in specs)):
        ap.error("--lockstep needs --setups (a setup may repeat: trainwell,trainwell is the A/A null "
                 "run) and no TREE: prefix (one process holds one trainwell)")
    results = [(bench_lockstep if args.lockstep else bench)(args, n) for n in names]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
