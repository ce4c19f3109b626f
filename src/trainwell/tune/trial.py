"""One trial: its run config from the study and the trial's parameters, a real trainwell run
in its own directory, and the outcome read back from that directory (objective, step of the
best evaluation, the autopilot's interventions, the reason a run could not finish)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from trainwell.config import resolve
from trainwell.errors import TrainingHalted, TrainwellError
from trainwell.tune.config import Study
from trainwell.tune.records import Dimension
from trainwell.tune.space import config_value, with_params


@dataclass
class Outcome:
    """What a trial came to. ``state``: complete, infeasible, failed or pruned."""

    state: str
    value: float | None = None
    best_step: int | None = None
    reason: str | None = None
    interventions: dict[str, int] = field(default_factory=dict)
    steps: int | None = None


def suggest(trial: optuna.Trial, dims: list[Dimension]) -> dict[str, Any]:
    """The trial's parameters (config values), asked of Optuna one dimension at a time: an
    enqueued point comes back as it is, an adaptive sampler chooses the rest."""
    params = {}
    for d in dims:
        if d.kind == "choice":
            x = trial.suggest_categorical(d.key, list(d.choices))
        elif d.kind == "int":
            x = trial.suggest_int(d.key, int(d.low), int(d.high))  # type: ignore[arg-type]
        else:
            x = trial.suggest_float(d.key, d.low, d.high, log=d.kind != "uniform")  # type: ignore[arg-type]
        params[d.key] = config_value(d, x)
    return params


def trial_config(study: Study, params: dict[str, Any], seed: int) -> Any:
    raw = with_params(study.base, params)
    if "seed" not in params:  # a study may search the seed itself (a benchmark's seeds)
        raw["seed"] = seed
    raw.setdefault("log", {})["progress"] = "off"
    return resolve(raw)


class PruneOnEval:
    """A sink that reports each evaluation of the objective's metric to Optuna and stops the
    run when the pruner says so (``tune.pruner``)."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.last: float | None = None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            return
        self.last = float(metrics[self.metric])
        self.trial.report(self.last, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {self.metric} = {self.last:.4g}")

    def close(self) -> None:
        pass


def run_trial(study: Study, trial: optuna.Trial, cfg: Any, run_dir: Path, metric: str, higher: bool) -> Outcome:
    """Train one trial in ``run_dir`` (resuming from its checkpoints when it has some) and
    say what came of it. A run the autopilot stops, or one whose evaluation is not finite, is
    infeasible: a result of the study, with its reason."""
    from trainwell.train.loop import run

    pruner = PruneOnEval(trial, metric) if study.tune.pruner != "none" else None
    try:
        run(cfg, run_dir=run_dir, progress=None, resume=True, extra_sinks=[pruner] if pruner else [])
    except optuna.TrialPruned as e:
        return Outcome("pruned", pruner.last if pruner else None, reason=str(e),
                       interventions=interventions(run_dir), steps=cfg.train.steps)
    except TrainingHalted as e:
        return Outcome("infeasible", reason=_halt_reason(run_dir, str(e)),
                       interventions=interventions(run_dir), steps=cfg.train.steps)
    except TrainwellError as e:
        return Outcome("failed", reason=f"{type(e).__name__}: {e}", interventions=interventions(run_dir))
    value, step = objective(run_dir, metric, higher, study.tune.objective)
    out = Outcome("complete", value, step, interventions=interventions(run_dir), steps=cfg.train.steps)
    if value is None:
        out.state, out.reason = "failed", f"the run logged no {metric}: give the task evaluation data"
    elif not math.isfinite(value):
        out.state, out.reason = "infeasible", f"non-finite: {metric} = {value}"
    return out


def objective(run_dir: Path, metric: str, higher: bool, kind: str) -> tuple[float | None, int | None]:
    """The objective and the step it was measured at: the best evaluation of ``metric`` in
    the run (``best``), or the last (``final``). A non-finite evaluation wins over any
    finite one: a run that blew up is not judged by its start."""
    rows = []
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        if metric in row and isinstance(row[metric], (int, float)):
            rows.append((int(row["step"]), float(row[metric])))
    if not rows:
        return None, None
    bad = [r for r in rows if not math.isfinite(r[1])]
    if bad:
        return bad[0][1], bad[0][0]
    if kind == "final":
        return rows[-1][1], rows[-1][0]
    pick = max if higher else min
    step, value = pick(rows, key=lambda r: r[1])
    return value, step


def interventions(run_dir: Path) -> dict[str, int]:
    """The autopilot's counts from the run's summary.json (``guard/skips`` -> ``skips``)."""
    try:
        auto = json.loads((run_dir / "summary.json").read_text()).get("autopilot", {})
    except (OSError, ValueError):
        return {}
    return {k.removeprefix("guard/"): int(v) for k, v in auto.items() if isinstance(v, (int, float))}


def _halt_reason(run_dir: Path, message: str) -> str:
    """``kind: message``, the kind from the logbook's last intervention (divergence,
    nonfinite, ...), so that reasons can be counted by kind."""
    events = read_jsonl(run_dir / "logbook.jsonl")
    kind = next((e.get("reason") for e in reversed(events) if e.get("reason")), None)
    return f"{kind}: {message}" if kind else message


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's JSON-lines file (the sinks' reader: non-finite values back as
    floats, a torn last line dropped); none when the run never wrote it."""
    from trainwell.sinks import read_jsonl as read_rows

    return read_rows(path) if path.is_file() else []


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
