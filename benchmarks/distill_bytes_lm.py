"""Does distillation beat training from scratch? A bytes-lm student at half the default width,
distilled from a default-width teacher, against the same student trained alone, same steps.

    python benchmarks/distill_bytes_lm.py [--teacher-steps 900] [--steps 300] [--seeds 0 1 2]
                                          [--teacher RUN_DIR] [--out DIR]
    python benchmarks/distill_bytes_lm.py --summary DIR [DIR ...]
    python benchmarks/distill_bytes_lm.py --cost ROUNDS --teacher RUN_DIR

The teacher is the default bytes-lm run (width 128) with ``--teacher-steps`` steps (its
cosine schedule ends there), or an existing run directory (``--teacher``). Each seed trains
the student (model.width = 64, the default otherwise) twice on the same data order and from
the same initial weights: alone, and with ``distill.teacher`` at the default alpha and
temperature. Prints one line per run and a summary table (validation bits per byte at the
end, and the teacher agreement of both students), and writes it as JSON to ``--out``.
Seeds and kinds can train in separate processes (``--seeds 1 --kinds distilled --out A``,
with ``--teacher``); ``--summary A B ...`` then compares every finished pair.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from trainwell.config import load_config
from trainwell.distill.loss import kd_per_target, top1_agreement
from trainwell.distill.teacher import load_teacher
from trainwell.tasks import build_plain_task
from trainwell.train.loop import run

STUDENT_WIDTH = 64
"""Half the default width (128): about a quarter of the default's non-embedding parameters."""


def train(overrides: list[str], run_dir: Path) -> dict[str, float]:
    cfg = load_config(None, [*overrides, "log.progress=off"])
    t0 = time.perf_counter()
    result = run(cfg, run_dir=run_dir, progress=False)
    return {**result.metrics, "wall_s": time.perf_counter() - t0}


def agreement_of_scratch(run_dir: Path, teacher_dir: Path, batches: int) -> dict[str, float]:
    """The teacher agreement of a student trained alone, on the validation batches the
    distilled runs are evaluated on (for the comparison)."""
    import torch

    from trainwell.data.source import eval_batches

    cfg = load_config(run_dir / "config.toml")
    task = build_plain_task(cfg)
    student = load_teacher(run_dir).model  # the run's own final weights
    teacher = load_teacher(teacher_dir).model
    agree = kl = n = 0.0
    with torch.no_grad():
        for batch in eval_batches(task.eval_data(), task.collate, batch_size=cfg.train.batch_size,
                                  max_batches=batches):
            s, t = task.loss(student, batch).logits, task.loss(teacher, batch).logits
            agree += top1_agreement(s, t).item()
            kl += kd_per_target(s, t, 1.0).sum().item()
            n += s[..., 0].numel()
    return {"eval/teacher_top1": agree / n, "eval/teacher_kl": kl / n}


def step_time_s(run_dir: Path) -> float:
    """Median of the logged step times (the machine's load varies; the median resists it)."""
    from trainwell.sinks import read_jsonl

    times = [r["sys/step_time_s"] for r in read_jsonl(run_dir / "metrics.jsonl") if "sys/step_time_s" in r]
    return statistics.median(times)


def summarize(folders: list[Path]) -> dict[str, object]:
    """Read every finished student run under ``folders`` (scratch-seedN, distilled-seedN) and
    print the comparison; the scratch students' teacher agreement is measured here."""
    results: dict[str, dict[int, dict[str, float]]] = {"scratch": {}, "distilled": {}}
    teacher_dir = None
    for folder in folders:
        for kind in results:
            for run_dir in sorted(folder.glob(f"{kind}-seed*")):
                path = run_dir / "summary.json"
                summary = json.loads(path.read_text()) if path.is_file() else {}
                if summary.get("status") != "completed":  # stopped, or still training
                    continue
                seed = int(run_dir.name.rsplit("seed", 1)[1])
                m = {**summary["final"], "wall_s": summary["wall_time_s"], "step_time_s": step_time_s(run_dir)}
                if kind == "distilled":
                    teacher_dir = Path(load_config(run_dir / "config.toml").distill.teacher)
                m["run_dir"] = str(run_dir)
                results[kind][seed] = m
    seeds = sorted(set(results["scratch"]) & set(results["distilled"]))
    if teacher_dir is None or not seeds:
        raise SystemExit("no seed with both a finished scratch and a finished distilled run")
    teacher = json.loads((teacher_dir / "summary.json").read_text())
    print(f"teacher {teacher_dir}: {teacher['steps']} steps, eval/bpb {teacher['final']['eval/bpb']:.4f}")
    for seed in seeds:
        s = results["scratch"][seed]
        s.update(agreement_of_scratch(Path(s["run_dir"]), teacher_dir,
                                      load_config(Path(s["run_dir"]) / "config.toml").train.eval_batches))
        for kind in results:
            m = results[kind][seed]
            print(f"seed {seed} {kind:9s}: eval/bpb {m['eval/bpb']:.4f}, teacher top-1 {m['eval/teacher_top1']:.4f}, "
                  f"KL {m['eval/teacher_kl']:.4f} nats/byte, median step {m['step_time_s']:.2f} s, {m['wall_s']:.0f} s")
    for kind in results:
        bpb = [results[kind][s]["eval/bpb"] for s in seeds]
        print(f"{kind:9s}: bpb mean {statistics.mean(bpb):.4f} (min {min(bpb):.4f}, max {max(bpb):.4f})")
    gaps = [results["distilled"][s]["eval/bpb"] - results["scratch"][s]["eval/bpb"] for s in seeds]
    print("distilled - scratch per seed: " + ", ".join(f"{g:+.4f}" for g in gaps)
          + f"; mean {statistics.mean(gaps):+.4f}")
    ratio = [results["distilled"][s]["step_time_s"] / results["scratch"][s]["step_time_s"] for s in seeds]
    print("step time distilled / scratch per seed: " + ", ".join(f"{r:.2f}" for r in ratio))
    return {"teacher": str(teacher_dir), "teacher_final": teacher["final"], "seeds": seeds, "runs": results}


def cost(teacher_dir: Path, rounds: int) -> None:
    """CPU time of one forward + backward of the student alone against the same with the
    teacher's forward and the distillation term (the rest of a step is the same in both), on
    one training batch, alternating, median over ``rounds``. CPU time of this process, not
    wall time: the other processes of a shared machine inflate the wall clock."""
    import torch

    from trainwell.distill.task import DistillTask

    cfg = load_config(None, [f"model.width={STUDENT_WIDTH}", "log.progress=off"])
    task = build_plain_task(cfg)
    distilled = DistillTask(task, load_teacher(teacher_dir).model)
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.train_data().get_batch(torch.arange(cfg.train.batch_size))
    times: dict[str, list[float]] = {"scratch": [], "distilled": []}
    for _ in range(rounds + 1):  # the first round warms up
        for kind, t in (("scratch", task), ("distilled", distilled)):
            t0 = time.process_time()
            t.loss(model, batch).sum.backward()
            times[kind].append(time.process_time() - t0)
            model.zero_grad(set_to_none=True)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(f"forward + backward, CPU time, median of {rounds}: scratch {1000 * med['scratch']:.0f} ms, "
          f"distilled {1000 * med['distilled']:.0f} ms, ratio {med['distilled'] / med['scratch']:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher-steps", type=int, default=900)  # the default run's length
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher", type=Path, help="an existing teacher run directory")
    p.add_argument("--out", type=Path, default=Path("runs/distill-bench"))
    p.add_argument("--kinds", nargs="+", choices=["scratch", "distilled"], default=["scratch", "distilled"],
                   help="which students to train (the two of a seed can train in separate processes)")
    p.add_argument("--summary", type=Path, nargs="+", metavar="DIR",
                   help="train nothing: compare the student runs already in these --out folders")
    p.add_argument("--cost", type=int, metavar="ROUNDS", help="train nothing: time the teacher's cost per step "
                   "(needs --teacher)")
    args = p.parse_args()
    if args.cost:
        cost(args.teacher, args.cost)
        return
    if args.summary:
        rows = summarize(args.summary)
        (args.summary[0] / "distill_bytes_lm.json").write_text(json.dumps(rows, indent=1))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = args.teacher
    if teacher is None:
        teacher = args.out / "teacher"
        m = train([f"train.steps={args.teacher_steps}", "seed=0"], teacher)
        print(f"teacher ({args.teacher_steps} steps): eval/bpb {m['eval/bpb']:.4f} in {m['wall_s']:.0f} s", flush=True)
    student = [f"model.width={STUDENT_WIDTH}", f"train.steps={args.steps}"]
    for seed in args.seeds:
        for kind in args.kinds:
            extra = [f"distill.teacher={teacher}"] if kind == "distilled" else []
            m = train([*student, f"seed={seed}", *extra], args.out / f"{kind}-seed{seed}")
            print(f"seed {seed} {kind:9s}: eval/bpb {m['eval/bpb']:.4f} in {m['wall_s']:.0f} s", flush=True)
    if args.kinds == ["scratch", "distilled"]:
        rows = summarize([args.out])
        (args.out / "distill_bytes_lm.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
