"""What do the instruments cost? Ratios to the same run without them.

The digits MLP (task defaults: 76k parameters, batch 64) trains through trainwell with
``instruments.preset=off`` (the baseline), with Cockpit's economy set every step and every
16 steps, and, to list each quantity's own cost, with one instrument alone every step.
Every setup runs in its own process, interleaved round by round (each round runs every
setup in a rotating order) so that a shared machine's drift cancels. Each process times
its own steps (wall and CPU time at every iteration's sampler draw), leaving out start-up
and the first ``--warmup`` steps. The instruments are read-only, so every setup must
compute the same losses as the baseline; the script checks that.

    PYTHONPATH=src python benchmarks/instruments_cost.py                    # ~6 min
    PYTHONPATH=src python benchmarks/instruments_cost.py --alone            # + each instrument alone
    PYTHONPATH=src python benchmarks/instruments_cost.py --setups off,economy@1 --runs 3

Every setup measured every N >= 3 steps also gives a second estimate from within its own
runs: its due steps (and the steps after them, where Alpha finishes) against its other
steps, which a busy shared machine disturbs far less than a comparison across processes.

Setups: ``off``; ``PRESET@EVERY`` (e.g. ``economy@1``, ``economy@16``, ``full@64``);
``NAME@EVERY`` for one instrument alone (``alpha@1``); any of them with ``+vmap`` appended
runs with the training-backward capture off (per-sample gradients by torch.func), e.g.
``economy@1+vmap``. Goals (issue: instruments): economy@1 / off <= 1.3, economy@16 / off <=
1.05. One thread per process (see overhead.py for why).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import StepClock, load, spread, wait_for_load  # noqa: E402

MARK = "INSTRUMENTS-RESULT "
GOALS = {"economy@1": 1.3, "economy@16": 1.05}
ECONOMY = ("alpha", "distance", "grad_hist1d", "grad_norm", "inner_test", "norm_test",
           "ortho_test", "update_size", "param_norm", "activations", "final_act", "attention",
           "noise_scale", "noise_scale_ps")  # fmt: skip
"""presets._ECONOMY, spelled out so that --alone lists each one."""


def overrides(setup: str) -> list[str]:
    """The config overrides of a setup name."""
    from trainwell.instruments.presets import PRESETS

    if setup == "off":
        return ["instruments.preset=off"]
    spec, _, flag = setup.partition("+")
    name, _, every = spec.partition("@")
    out = [f"instruments.every={int(every or 1)}"]
    if name in PRESETS:
        out.append(f"instruments.preset={name}")
    else:
        out += ["instruments.preset=off", f'instruments.include=["{name}"]']
    if flag not in ("", "vmap"):
        raise SystemExit(f"unknown flag +{flag} in {setup!r} (only +vmap)")
    return out


def run_one(setup: str, steps: int, warmup: int) -> dict:
    """One run of the digits MLP in this process; prints the result line."""
    from trainwell.config import load_config
    from trainwell.instruments import runner as runner_mod
    from trainwell.tasks import build_task
    from trainwell.train.loop import run

    if setup.endswith("+vmap"):  # per-sample gradients by torch.func only
        base = runner_mod.InstrumentRunner.__init__

        def no_capture(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            base(self, *a, **{**k, "capture": False})

        runner_mod.InstrumentRunner.__init__ = no_capture  # type: ignore[method-assign]
    cfg = load_config(None, ["task.name=digits", "train.eval_every=0", "log.sample_chars=0",
                             "checkpoint.every_steps=0", "checkpoint.every_minutes=0",
                             f"train.steps={steps}", "train.threads=1", *overrides(setup)],
                      check_task=False)
    task = build_task(cfg)
    clock = StepClock()
    clock.install()
    with tempfile.TemporaryDirectory(prefix="tw-inst-") as d:
        result = run(cfg, task=task, run_dir=Path(d) / "run", progress=False)
    t, cpu = clock.wall, clock.cpu
    timed = steps - 1 - warmup
    losses = {int(h["step"]): h["train/loss"] for h in result.history if "train/loss" in h}
    keys = sorted({k for h in result.history for k in h if k.startswith("inst/")})
    return {"setup": setup, "ms_per_step": (t[steps - 1] - t[warmup]) / timed * 1e3,
            "cpu_ms_per_step": (cpu[steps - 1] - cpu[warmup]) / timed * 1e3,
            "losses": losses, "inst_keys": len(keys),
            # step j runs from draw j to draw j + 1
            "step_ms": [(b - a) * 1e3 for a, b in zip(t[:-1], t[1:], strict=True)],
            "step_cpu_ms": [(b - a) * 1e3 for a, b in zip(cpu[:-1], cpu[1:], strict=True)]}


def in_run(runs: dict[str, list[dict]], warmup: int) -> None:
    """A second estimate, robust to a busy machine: within each run of a preset measured
    every N > 1 steps, the median CPU time of its due steps and of the steps after them (Alpha's
    far end) against the median of its other steps, interleaved in the same process so
    that drift cancels. Extrapolated: ratio(every = K) = 1 + (due + after) / (K · plain)."""
    rows = []
    for s, rs in runs.items():
        spec = s.partition("+")[0]
        name, _, every = spec.partition("@")
        n = int(every or 1)
        if s == "off" or n < 3:
            continue
        due, after, plain = [], [], []
        for r in rs:
            steps = r["step_cpu_ms"][warmup:]
            idx = range(warmup, warmup + len(steps))
            due.append(statistics.median(x for j, x in zip(idx, steps, strict=True) if j % n == 0))
            after.append(statistics.median(x for j, x in zip(idx, steps, strict=True) if j % n == 1))
            plain.append(statistics.median(x for j, x in zip(idx, steps, strict=True) if j % n > 1))
        extra = [d + a - 2 * p for d, a, p in zip(due, after, plain, strict=True)]
        rows.append((s, plain, [d - p for d, p in zip(due, plain, strict=True)],
                     [a - p for a, p in zip(after, plain, strict=True)], extra))
    if not rows:
        return
    print("  within each run (median CPU time per step; extra = due step + the step after, over the plain steps):")
    print(f"  {'setup':<22} {'plain step ms':<22} {'due step +ms':<22} {'step after +ms':<22} "
          f"{'implied ratio every 1 / 16 / 64':<34} goal")
    for s, plain, due, after, extra in rows:
        p, e = statistics.median(plain), statistics.median(extra)
        ratios = " / ".join(f"{1 + e / (k * p):.3f}" for k in (1, 16, 64))
        spec = s.partition("+")[0].partition("@")[0]
        verdict = ""
        if spec == "economy":
            r1, r16 = 1 + e / p, 1 + e / (16 * p)
            verdict = (f"every 1 <= 1.3: {'met' if r1 <= 1.3 else 'MISSED'}; "
                       f"every 16 <= 1.05: {'met' if r16 <= 1.05 else 'MISSED'}")
        print(f"  {s:<22} {spread(plain):<22} {spread(due):<22} {spread(after):<22} {ratios:<34} {verdict}")


def child(setup: str, steps: int, warmup: int) -> dict:
    cmd = [sys.executable, __file__, "--one", setup, "--steps", str(steps), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(MARK)]
    if out.returncode != 0 or not lines:
        sys.exit(f"{setup} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", default="off,economy@1,economy@16,economy@8")
    ap.add_argument("--alone", action="store_true", help="also each economy instrument alone, every step")
    ap.add_argument("--runs", type=int, default=5, help="runs per setup (>= 4 to quote)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for --max-load")
    ap.add_argument("--json", type=Path, help="also write every run's numbers here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(MARK + json.dumps(run_one(args.one, args.steps, args.warmup)))
        return
    setups = args.setups.split(",") + ([f"{n}@1" for n in ECONOMY] if args.alone else [])
    if "off" not in setups:
        setups.insert(0, "off")
    for s in setups:
        overrides(s)  # fail on a bad name before minutes of running
    print(f"digits MLP, {args.steps} steps (first {args.warmup} not timed), 1 thread, "
          f"{args.runs} interleaved runs per setup; {os.cpu_count()} CPUs")
    before = wait_for_load(args.max_load, args.wait)
    runs: dict[str, list[dict]] = {s: [] for s in setups}
    for r in range(args.runs):
        for s in setups[r % len(setups):] + setups[: r % len(setups)]:
            runs[s].append(child(s, args.steps, args.warmup))
    print(f"1-min load: {before:.2f} before, {load():.2f} after")
    base = runs["off"]
    print(f"  {'setup':<22} {'wall ms/step':<24} {'CPU ms/step':<24} {'ratio to off (paired)':<24} goal")
    for s in setups:
        w = [x["ms_per_step"] for x in runs[s]]
        c = [x["cpu_ms_per_step"] for x in runs[s]]
        ratio = [x["ms_per_step"] / b["ms_per_step"] for x, b in zip(runs[s], base, strict=True)]
        goal = GOALS.get(s)
        verdict = "" if goal is None else f"<= {goal}: " + (
            "met" if max(ratio) <= goal else "MISSED" if min(ratio) > goal
            else "not resolved across processes (the spread straddles it; see the in-run estimate)")
        print(f"  {s:<22} {spread(w):<24} {spread(c):<24} {spread(ratio):<24} {verdict}")
    in_run(runs, args.warmup)
    worst = 0.0
    for s in setups:
        for x, b in zip(runs[s], base, strict=True):
            for step, v in b["losses"].items():
                ref = x["losses"].get(step)
                if ref is not None:
                    worst = max(worst, abs(ref - v) / max(abs(v), 1e-12))
    print(f"  losses of every setup vs off: max relative difference {worst:.2e} "
          f"({'OK' if worst <= 1e-6 else 'DIFFERENT: the instruments changed training'})")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "load_before": before}, indent=1))


if __name__ == "__main__":
    main()
