"""Does distillation beat training from scratch? A bytes-lm student at half the default width,
distilled from a default-width teacher, against the same student trained alone, same steps.

    python benchmarks/distill_bytes_lm.py [--teacher-steps 300] [--steps 300] [--seeds 0 1 2]
                                          [--teacher RUN_DIR] [--out DIR]

The teacher is the default bytes-lm run (width 128) with ``--teacher-steps`` steps (its
cosine schedule ends there), or an existing run directory (``--teacher``). Each seed trains
the student (model.width = 64, the default otherwise) twice on the same data order and from
the same initial weights: alone, and with ``distill.teacher`` at the default alpha and
temperature. Prints one line per run and a summary table (validation bits per byte at the
end, and the teacher agreement of both students), and writes it as JSON to ``--out``.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher", type=Path, help="an existing teacher run directory")
    p.add_argument("--out", type=Path, default=Path("runs/distill-bench"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = args.teacher
    rows: dict[str, object] = {"steps": args.steps, "seeds": args.seeds}
    if teacher is None:
        teacher = args.out / "teacher"
        m = train([f"train.steps={args.teacher_steps}", "seed=0"], teacher)
        rows["teacher"] = m
        print(f"teacher ({args.teacher_steps} steps): eval/bpb {m['eval/bpb']:.4f} in {m['wall_s']:.0f} s", flush=True)
    student = [f"model.width={STUDENT_WIDTH}", f"train.steps={args.steps}"]
    results: dict[str, list[dict[str, float]]] = {"scratch": [], "distilled": []}
    for seed in args.seeds:
        for kind in ("scratch", "distilled"):
            extra = [f"distill.teacher={teacher}"] if kind == "distilled" else []
            run_dir = args.out / f"{kind}-seed{seed}"
            m = train([*student, f"seed={seed}", *extra], run_dir)
            if kind == "scratch":
                m.update(agreement_of_scratch(run_dir, teacher, load_config(run_dir / "config.toml").train.eval_batches))
            results[kind].append(m)
            print(f"seed {seed} {kind:9s}: eval/bpb {m['eval/bpb']:.4f}, teacher top-1 "
                  f"{m['eval/teacher_top1']:.4f}, KL {m['eval/teacher_kl']:.4f} nats/byte, "
                  f"{m['wall_s']:.0f} s", flush=True)
    rows["runs"] = results
    for kind, ms in results.items():
        bpb = [m["eval/bpb"] for m in ms]
        print(f"{kind:9s}: bpb mean {statistics.mean(bpb):.4f} (min {min(bpb):.4f}, max {max(bpb):.4f})")
    gaps = [d["eval/bpb"] - s["eval/bpb"] for s, d in zip(results["scratch"], results["distilled"], strict=True)]
    print("distilled - scratch per seed: " + ", ".join(f"{g:+.4f}" for g in gaps))
    (args.out / "distill_bytes_lm.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
