"""trainwell against its peers: the cost of a training step over a plain PyTorch loop.

Setups, each doing the same update (forward, loss = sum / count, backward, global-norm
clipping at ``clip.max_norm``, AdamW with trainwell's settings (torch's fused kernel, betas
0.9/0.95, weight decay on matrices only), warmup-cosine learning rate, zero_grad):

  plain       the loop written by hand
  trainwell   ``trainwell.train.loop.run`` with its defaults (guards on, the minimal
              instruments every 16 steps, metrics.jsonl and TensorBoard every 10 steps),
              no progress output and no checkpoint inside the run
  fit         (probe only) ``trainwell.fit`` on a ``TensorDataset`` of the probe's tensors, as
              a user holds them: the plain loop is then the indexing loop fit's fixed cost
              is judged against
  tw_economy  (MLP only) the same with ``instruments.preset=economy``
  fabric      Lightning Fabric: ``fabric.setup``, ``fabric.backward``, ``fabric.clip_gradients``
  trainer     the Lightning Trainer, quiet: no logger, progress bar, model summary,
              checkpointing or validation; clipping by ``gradient_clip_val``
  accelerate  HF Accelerate: ``accelerator.prepare`` of model, optimizer and schedule,
              ``accelerator.backward``, ``accelerator.clip_grad_norm_``
  cockpit     (MLP only) the plain loop under Cockpit's economy preset (BackPACK), measured
              at every step as Cockpit's examples do. BackPACK cannot extend LayerNorm, so
              Cockpit runs the digits MLP without its norms and residual blocks
              (``model.residual=false model.norm=none``: Linear-GELU twice, then the head),
              against ``plain_bp``, the plain loop on that same model

Workloads: ``probe`` (one Linear(64, 10), batch 128: almost no compute, so a step is the
setup's fixed cost), ``mlp`` (trainwell's digits MLP, batch 64), ``gpt`` (trainwell's
bytes-lm GPT, the task's model with seq_len 64 and batch 8, a short run). One micro-batch
per step everywhere (``train.accumulate=1``): each framework spells accumulation its own way.

Method: all setups run in ONE process per workload, one torch thread, interleaved: each
round runs every setup once, in an order that rotates round to round, so the drift of a
shared machine hits all of them alike. Every setup draws its batches from trainwell's
``ResumableSampler`` (the same ids, so the same losses); the clock is the wall and CPU time
of each draw, and a run's figure is its median step interval after the first ``warmup``
steps. A setup's ratio and extra milliseconds are taken against the plain run of the same
round, then the median over rounds is reported (the spread is min-max over rounds).
``--lockstep`` interleaves finer: every setup (Cockpit aside) in its own thread, taking
turns of 7 steps (benchmarks/lockstep.py, the plain loop twice as the null pair); on a
loaded machine the pairing per turn resolves what whole runs cannot. The loops themselves
are in benchmarks/peers_loops.py.

The frameworks are never dependencies of trainwell, so the script runs in its own virtual
environment, made the first time (benchmarks/.peers-venv: torch 2.13.0, lightning,
accelerate, cockpit-for-pytorch, and this checkout of trainwell, editable):

    python benchmarks/peers.py                                  # probe, mlp, gpt; 5 rounds
    python benchmarks/peers.py --workloads probe --rounds 2     # a quick look
    python benchmarks/peers.py --lockstep                       # turns of 7 steps, one thread each

Results and the command that produced them: benchmarks/RESULTS.md, section "Peers".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peers_loops import RUNNERS, Prepared

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".peers-venv"
PEERS = ("torch==2.13.0", "lightning==2.6.6", "accelerate==1.16.0", "cockpit-for-pytorch==1.0.2",
         "setuptools<81")
"""What the environment holds besides trainwell (the versions measured in RESULTS.md).
setuptools < 81: Cockpit 1.0.2 imports ``pkg_resources``, which setuptools 81 removed."""


def ensure_venv() -> None:
    """Re-run the script that was started inside benchmarks/.peers-venv, making it the first time."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        print(f"making {VENV} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *PEERS], check=True)
        subprocess.run([*pip, "-e", str(ROOT), "torch==2.13.0"], check=True)
        # backpack-for-pytorch pulls torchvision, whose PyPI wheel does not load beside the CPU
        # torch ("operator torchvision::nms does not exist") and breaks importing Lightning
        # (its torchmetrics imports torchvision when present); BackPACK needs it only for examples
        subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "torchvision"], check=True)
    os.execv(str(python), [str(python), os.path.abspath(sys.argv[0]), *sys.argv[1:]])  # the script run (peers.py or one that imports it)


# ---------------------------------------------------------------- workloads

COMMON = ("train.eval_every=0", "train.accumulate=1", "train.threads=1", "log.sample_chars=0",
          "checkpoint.every_steps=0", "checkpoint.every_minutes=0")
"""No evaluation and no checkpoint inside the run (the other setups do neither); one thread."""


@dataclass(frozen=True)
class Workload:
    help: str
    overrides: tuple[str, ...]
    steps: int
    warmup: int
    """Steps left out of the timing (allocator and cache warm-up, the frameworks' first-step set-up)."""
    setups: tuple[str, ...]


BASE_SETUPS = ("plain", "trainwell", "fabric", "trainer", "accelerate")
WORKLOADS = {
    "probe": Workload("one Linear(64, 10), batch 128: the fixed cost of a step",
                      ("task.name=peers:probe_task", "train.batch_size=128", "schedule.warmup_steps=20"),
                      steps=600, warmup=100, setups=(*BASE_SETUPS, "fit")),
    "mlp": Workload("digits MLP (task defaults: depth 2, width 128, batch 64)", ("task.name=digits",),
                    steps=300, warmup=50, setups=(*BASE_SETUPS, "tw_economy", "plain_bp", "cockpit")),
    # the task's model; seq_len 64 and batch 8 as in overhead.py (the defaults, 128 x 32, took
    # 1.5 s a step on the loaded shared machine: 5 rounds would take half an hour)
    "gpt": Workload("bytes-lm GPT (task defaults: depth 4, width 128), seq_len 64, batch 8",
                    ("task.name=bytes-lm", "task.seq_len=64", "train.batch_size=8", "train.eval_batches=1",
                     "schedule.warmup_steps=10"),
                    steps=60, warmup=10, setups=BASE_SETUPS),
}
COCKPIT_STEPS = (40, 8)
"""(steps, warmup) of a Cockpit run (each of its steps costs hundreds of plain ones), and of
its baseline plain_bp (the same steps: the last losses must agree)."""
EXTRA = {"tw_economy": ("instruments.preset=economy",),
         "plain_bp": ("model.residual=false", "model.norm=none"),
         "cockpit": ("model.residual=false", "model.norm=none")}
"""A setup's own overrides (cockpit and plain_bp: a model BackPACK can extend)."""
BASELINE = {"cockpit": "plain_bp"}
"""The setup a setup's ratio is taken against, when not the plain loop."""


def probe_task(cfg: Any) -> Any:
    """The probe as a trainwell Task (the ``task.name`` entry point ``peers:probe_task``)."""
    import torch
    from torch import nn

    from trainwell.data.tensor_rows import TensorRows
    from trainwell.tasks.base import LossOutput, Task

    class ProbeTask(Task):
        """Random inputs and labels through one Linear layer: almost no compute."""

        name, metric, unit = "probe", "loss", "samples"

        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self._data = TensorRows(torch.randn(4096, 64, generator=g),  # (N, 64)
                                    torch.randint(0, 10, (4096,), generator=g))  # (N,)

        def build_model(self) -> nn.Module:
            return nn.Linear(64, 10)

        def train_data(self) -> TensorRows:
            return self._data

        def loss(self, model: nn.Module, batch: Any) -> LossOutput:
            x, y = batch  # (B, 64), (B,)
            per_sample = nn.functional.cross_entropy(model(x), y, reduction="none")  # (B,)
            return LossOutput(per_sample.sum(), float(len(y)), {}, per_sample)

    return ProbeTask()


def prepare(workload: str, steps: int, extra: tuple[str, ...] = ()) -> Prepared:
    from trainwell.config import load_config
    from trainwell.tasks import build_task

    wl = WORKLOADS[workload]
    cfg = load_config(None, [*COMMON, *wl.overrides, f"train.steps={steps}", *extra], check_task=False)
    return Prepared(cfg, probe_task(cfg) if workload == "probe" else build_task(cfg))


# ---------------------------------------------------------------- the clock

TICKS: list[tuple[float, float]] = []
"""(wall, CPU) time at every ResumableSampler.draw: one per step in every setup. The CPU
time (``time.process_time``: every thread of the process) counts the work a step does; on
a shared machine under load the wall time also counts the waits for a core."""


def install_clock() -> None:
    from trainwell.data.sampler import ResumableSampler

    draw = ResumableSampler.draw

    def timed_draw(sampler: Any, count: int) -> Any:
        TICKS.append((time.perf_counter(), time.process_time()))
        return draw(sampler, count)

    ResumableSampler.draw = timed_draw  # type: ignore[method-assign]


def timed(workload: str, setup: str) -> dict[str, float]:
    """One run of a setup: median step interval in wall and CPU time and mean CPU interval
    (ms) after the warm-up, and the last loss."""
    wl = WORKLOADS[workload]
    steps, warmup = COCKPIT_STEPS if setup in ("cockpit", "plain_bp") else (wl.steps, wl.warmup)
    p = prepare(workload, steps, EXTRA.get(setup, ()))
    TICKS.clear()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # the frameworks' own lines
        last = RUNNERS[setup](p, steps)
    ticks = TICKS[warmup:steps]
    wall = [(b[0] - a[0]) * 1e3 for a, b in zip(ticks, ticks[1:], strict=False)]
    cpu = [(b[1] - a[1]) * 1e3 for a, b in zip(ticks, ticks[1:], strict=False)]
    return {"wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu), "cpu_mean_ms": statistics.fmean(cpu),
            "loss": last}


# ---------------------------------------------------------------- the parent


def spread(xs: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))} to {fmt.format(max(xs))})"


def bench(workload: str, rounds: int) -> None:
    wl = WORKLOADS[workload]
    setups = list(wl.setups)
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in setups}
    load = os.getloadavg()[0]
    for r in range(rounds):
        for setup in setups[r % len(setups):] + setups[:r % len(setups)]:  # rotating order
            runs[setup].append(timed(workload, setup))
    print(f"\n== {workload}: {wl.help}; {wl.steps} steps, the first {wl.warmup} not timed "
          f"(cockpit, plain_bp: {COCKPIT_STEPS[0]}, {COCKPIT_STEPS[1]}); {rounds} rounds; "
          f"1-min load {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"  {'setup':<11} {'CPU ms/step':<24} {'/ plain':<24} {'extra CPU ms':<28} "
          f"{'/ plain, mean CPU':<24} {'/ plain, wall':<24} last loss   (cockpit: over plain_bp)")
    for s in setups:
        ours, base = runs[s], runs[BASELINE.get(s, "plain")]
        print(f"  {s:<11} {spread([x['cpu_ms'] for x in ours], '{:.4g}'):<24} "
              f"{spread(paired(ours, base, 'cpu_ms'), '{:.3f}'):<24} "
              f"{spread(paired(ours, base, 'cpu_ms', ratio=False), '{:+.3f}'):<28} "
              f"{spread(paired(ours, base, 'cpu_mean_ms'), '{:.3f}'):<24} "
              f"{spread(paired(ours, base, 'wall_ms'), '{:.3f}'):<24} {ours[0]['loss']:.6g}", flush=True)


def paired(ours: list[dict[str, float]], base: list[dict[str, float]], key: str, ratio: bool = True) -> list[float]:
    """Per round, ``key`` of a setup's run over (or minus) that of its baseline's run."""
    return [x[key] / b[key] if ratio else x[key] - b[key] for x, b in zip(ours, base, strict=True)]


LOCKSTEP = {"probe": (1500, 105, 10), "mlp": (600, 70, 5), "gpt": (300, 14, 3)}
"""--lockstep: (steps, untimed steps, rounds per block) per workload; turns of 7 steps."""


def bench_lockstep(workload: str) -> None:
    """All setups (Cockpit aside) in threads taking turns of 7 steps (benchmarks/lockstep.py),
    with the plain loop twice: plain.2/plain is the null ratio that shows the pairing's bias."""
    import lockstep

    steps, skip, block = LOCKSTEP[workload]
    labels = [s for s in WORKLOADS[workload].setups if s in (*BASE_SETUPS, "fit")] + ["plain.2"]
    bodies = []
    for label in labels:
        setup = label.partition(".")[0]
        bodies.append(functools.partial(RUNNERS[setup], prepare(workload, steps, EXTRA.get(setup, ())), steps))
    lock = lockstep.Lockstep(len(labels), block, turn=7)
    lock.install()
    load = os.getloadavg()[0]
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        losses = lock.run(bodies)
    result = {"labels": labels, "turn": 7, "block": block, "wall": lock.wall, "cpu": lock.cpu, "first": lock.first}
    print(f"\n== {workload} (lockstep): {WORKLOADS[workload].help}; {steps} steps each, the first {skip} not timed; "
          f"turns of 7 steps, the order rotating every {block} rounds; 1-min load {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; last losses "
          + ", ".join(f"{lab} {v:.6g}" for lab, v in zip(labels, losses, strict=True)))
    pairs = [("plain.2", "plain"), *((s, "plain") for s in labels[1:-1])]
    # the goal "a fixed cost no larger than Accelerate's", paired round by round
    pairs += [(s, "accelerate") for s in ("trainwell", "fit") if s in labels and "accelerate" in labels]
    for line in lockstep.describe([result], pairs, skip):
        print(line, flush=True)


def versions() -> str:
    from importlib.metadata import version

    names = ("torch", "lightning", "accelerate", "cockpit-for-pytorch", "backpack-for-pytorch", "trainwell")
    return ", ".join(f"{n} {version(n)}" for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="probe,mlp,gpt", help="comma-separated: " + ", ".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=5, help="rounds (each runs every setup once)")
    ap.add_argument("--lockstep", action="store_true", help="all setups in one process taking turns of 7 "
                    "steps (benchmarks/lockstep.py): finer pairing on a loaded machine; Cockpit left out")
    args = ap.parse_args()
    names = [w for w in args.workloads.split(",") if w]
    if unknown := [w for w in names if w not in WORKLOADS]:
        ap.error(f"unknown workload {unknown}; valid: {', '.join(WORKLOADS)}")
    ensure_venv()
    import lightning  # noqa: F401 (imported first: it sets its loggers' levels on import)
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    warnings.filterwarnings("ignore")  # the frameworks' advice on data loaders and workers
    for name in ("lightning.pytorch", "lightning.fabric", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers:probe_task
    if not args.lockstep:
        install_clock()
    print(f"trainwell peers benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"1 torch thread; {versions()}")
    print("command: python " + " ".join(["benchmarks/peers.py", *sys.argv[1:]]))
    for name in names:
        bench_lockstep(name) if args.lockstep else bench(name, args.rounds)


if __name__ == "__main__":
    main()
