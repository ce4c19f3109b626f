"""The model a run directory holds, and the spread of its metric across seeds.

The model is rebuilt the way ``trainwell export`` reads weights: the run's own
config.toml builds the task and its model, and the newest valid checkpoint (raw or EMA
weights) is loaded into it, on the CPU.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.config import RunConfig, load_config, read_toml
from trainwell.errors import CheckpointError, TrainwellError
from trainwell.tasks import Task, build_task


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    task: Task
    model: nn.Module
    """fp32, on the CPU, in eval mode, with the checkpoint's weights."""
    step: int
    weights: str
    """'model' (raw) or 'ema'."""


def load_run(run_dir: str | Path, ema: bool = False) -> LoadedRun:
    """The task and the trained model of a run directory (CheckpointError/ConfigError: why not)."""
    from trainwell.checkpoint import newest_weights

    run_dir = Path(run_dir)
    config = run_dir / "config.toml"
    if not config.is_file():
        raise CheckpointError(f"{run_dir} is not a trainwell run directory (no config.toml in it)")
    cfg = load_config(config)
    info, state = newest_weights(run_dir, ema, purpose="quantize")
    task = build_task(cfg)
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{info.path}: the weights do not fit the model config.toml builds ({e})") from e
    return LoadedRun(run_dir, cfg, task, model.float().cpu().eval(), info.step, "ema" if ema else "model")


@dataclass
class Spread:
    """One standard deviation of the fp32 model's metric, and how it was estimated."""

    value: float
    how: str
    """'seeds' (runs that differ only in their seed) or 'bootstrap' (evaluation batches)."""
    n: int
    """Seeds, or evaluation batches."""
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "how": self.how, "n": self.n, "detail": self.detail}


def seed_spread(run: LoadedRun, metric_key: str, own_value: float) -> Spread | None:
    """The std of ``metric_key``'s final value over this run and its sibling runs (same
    parent folder, same config.toml but for the seed and NOT_RECIPE, a summary.json); None
    with fewer than two seeds."""
    own = _config_without_seed(run.run_dir)
    values = {run.cfg.seed: own_value}
    names = []
    for d in sorted(run.run_dir.parent.iterdir()):
        if d == run.run_dir or not (d / "summary.json").is_file():
            continue
        try:
            if _config_without_seed(d) != own:
                continue
            seed = read_toml(d / "config.toml").get("seed", 0)
            final = json.loads((d / "summary.json").read_text())["final"][metric_key]
        except (OSError, ValueError, KeyError, TypeError, TrainwellError):
            continue  # not a finished sibling: not counted
        if seed not in values and isinstance(final, int | float) and math.isfinite(final):
            values[seed] = float(final)
            names.append(d.name)
    if len(values) < 2:
        return None
    std = statistics.stdev(values.values())
    detail = (f"std of the final {metric_key} over {len(values)} seeds "
              f"(this run and {', '.join(names)}: same training config but the seed)")
    return Spread(std, "seeds", len(values), detail)


NOT_RECIPE = ("seed", "instruments", "log", "checkpoint")
"""Config sections two runs may differ in and still be seeds of one recipe: instruments only
read the run, log and checkpoint only write it (none changes a trained number)."""


def _config_without_seed(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config (defaults filled in, so that a config.toml written before a
    field existed equals one written after) without NOT_RECIPE."""
    raw = load_config(run_dir / "config.toml").to_dict()
    for k in NOT_RECIPE:
        raw.pop(k, None)
    return raw


def check_skips(model: nn.Module, skip: list[str]) -> list[str]:
    """A problem line for each --skip that names no nn.Linear of the model."""
    import difflib

    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    problems = []
    for name in skip:
        if name in linears:
            continue
        close = difflib.get_close_matches(name, linears, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; linear layers: {', '.join(linears[:8])}"
        hint += ", ..." if not close and len(linears) > 8 else ""
        problems.append(f"--skip {name!r}: no linear layer of that name{hint}")
    return problems

