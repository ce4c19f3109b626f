"""The run directory: config.toml, env.json, metrics.jsonl, summary.json, TensorBoard events."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


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


def record_model(run_dir: Path, model: torch.nn.Module) -> None:
    """Add ``"model": describe_model(model)`` to the run's summary.json (a run of a user's
    model: its config's [model] section describes a built-in model it does not use). A run
    without summary.json (it failed before writing one) is left alone."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):  # the run failed before writing one: nothing to add to
        return
    if isinstance(summary, dict):
        write_json(path, {**summary, "model": describe_model(model)})


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
