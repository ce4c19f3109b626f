"""The run directory: config.toml, env.json, metrics.jsonl, summary.json, TensorBoard events."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from trainwell.config import RunConfig
    from trainwell.guards.autopilot import Autopilot
    from trainwell.instruments.runner import InstrumentRunner
    from trainwell.sinks import ConsoleProgress
    from trainwell.train.checkpointing import Checkpointer
    from trainwell.train.flight import Flight
    from trainwell.train.state import TrainState


def make_run_dir(run_dir: str | Path | None, task_name: str, root: str | Path = "runs") -> Path:
    if run_dir is not None:
        path = Path(run_dir)
    else:
        safe = task_name.replace(":", "-").replace("/", "-").replace(".", "-")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{safe}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{safe}-{stamp}-{n}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, data: Any) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def describe_model(model: torch.nn.Module) -> dict[str, Any]:
    """The model as a run's summary.json and report name it: its class (module.QualName) and
    parameter counts."""
    params = list(model.parameters())
    cls = type(model)
    return {
        "class": cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}",
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
    }


def environment(seed: int, device: torch.device, precision: str) -> dict[str, Any]:
    import numpy

    import trainwell

    env: dict[str, Any] = {
        "trainwell": trainwell.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "seed": seed,
        "device": str(device),
        "precision": precision,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    for key, where in (("git_revision", Path.cwd()), ("trainwell_git_revision", Path(__file__).parent)):
        rev = _git_revision(where)
        if rev:
            env[key] = rev
    return env


def _git_revision(where: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=5
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


# ---------------------------------------------------------------- a run's beginning and end


def start_run(cfg: RunConfig, st: TrainState, out_dir: Path, main: bool, bar: ConsoleProgress) -> None:
    """The run directory's config.toml and env.json, and the console's first lines."""
    if main:
        (out_dir / "config.toml").write_text(cfg.to_toml())
        env = environment(cfg.seed, st.device, st.precision.name)
        if st.dist is not None:
            from trainwell.dist.rank0 import describe

            env["dist"] = describe(st.dist)
        write_json(out_dir / "env.json", env)
    n_params = sum(p.numel() for p in st.model.parameters())
    bar.log(f"trainwell: task {cfg.task.name}, {n_params:,} parameters, "
            f"{cfg.train.steps} steps on {st.device} ({st.precision.name}); run dir {out_dir}")
    for line in cfg.advice():
        bar.log(f"advice: {line}")


def resume_run(st: TrainState, pilot: Autopilot, ckpt: Checkpointer, out_dir: Path, bar: ConsoleProgress) -> int | None:
    """Restore the newest valid checkpoint of ``out_dir``; its step, or None (start fresh).
    Metric rows logged after it are dropped: the resumed run logs them again, identically."""
    from trainwell.train.checkpointing import truncate_metrics

    info, skipped = ckpt.resume(st, pilot)
    for message in skipped:
        bar.log(f"warning: {message}")
    if info is None:
        bar.log(f"no valid checkpoint in {out_dir}; starting fresh")
        if st.dist is None or st.dist.main:  # rows of an earlier attempt would be logged twice
            truncate_metrics(out_dir / "metrics.jsonl", 0)
        return None
    main = st.dist is None or st.dist.main
    dropped = truncate_metrics(out_dir / "metrics.jsonl", info.step) if main else 0  # rank 0 owns the file
    restart = st.dist.restart if st.dist is not None else 0  # torchrun restarted the group after a rank died
    pilot.log("resume", f"Resumed from the checkpoint at step {info.step} ({dropped} metric rows "
              f"logged after it were dropped and will be logged again)"
              + (f" after elastic restart {restart}." if restart else "."), step=info.step, skipped=skipped)
    bar.log(f"resumed from step {info.step} ({info.path})")
    return info.step


def finish_run(f: Flight, status: str, wall: float) -> dict[str, float]:
    """Close what the run opened and write its record: the instruments' histograms,
    summary.json, logbook.md. Runs whether the run completed, stopped or failed. Returns the
    final metrics."""
    from trainwell.train.metrics import final_metrics
    from trainwell.train.state import unwrap

    f.bar.close()
    if f.probe is not None:
        f.probe.close()
    f.ckpt.close()
    if f.runner is not None:
        _save_instruments(f.runner, f.out_dir, f.bar)
    final = final_metrics(f.last_eval, f.history)
    st = f.st
    if f.main:
        write_json(f.out_dir / "summary.json", {
            "status": status, "task": f.cfg.task.name, "metric": f"eval/{f.task.metric}",
            "higher_is_better": f.task.higher_is_better, "steps": st.step, "iterations": st.iteration,
            "samples": st.samples_seen, "targets": st.targets_seen, "wall_time_s": round(wall, 3),
            "resumed_from": f.resumed_from, "autopilot": f.pilot.metrics(), "final": final,
            "model": describe_model(unwrap(st.model)),
        })
    for sink in f.sinks:
        sink.close()
    if f.pilot.logbook is not None and f.pilot.logbook.events():
        f.pilot.logbook.write_markdown()
    return final


def _save_instruments(runner: InstrumentRunner, out_dir: Path, bar: ConsoleProgress) -> None:
    """Histograms for the report, and what the instruments could not measure."""
    from trainwell.report import append_histograms

    by_step: dict[int, dict[str, Any]] = {}
    for name, hists in runner.histograms().items():
        for h in hists:
            by_step.setdefault(int(h.step), {})[name] = h
    for step in sorted(by_step):
        append_histograms(out_dir, by_step[step])
    for line in runner.warnings:
        bar.log(f"instruments: {line}")
    runner.close()
