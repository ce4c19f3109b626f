"""What a study is made of, as plain data: its search space (``Dimension``) and its trials
(``TrialRecord``), gathered into a ``StudyView``. The analysis, ``tune show`` and the report
read only these; the engine (``study.py``) builds them from Optuna's storage and the trials'
run directories."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["log", "uniform", "int", "choice", "one_minus_log"]
State = Literal["complete", "infeasible", "failed", "running", "pruned"]
STATES: tuple[str, ...] = ("complete", "infeasible", "failed", "running", "pruned")


@dataclass(frozen=True)
class Dimension:
    """One searched config key. ``key`` is a dotted config key, with ``[i]`` for an element
    of a list field (``optim.betas[0]``). ``one_minus_log`` searches ``1 - value`` on a log
    scale between ``low`` and ``high`` (AlgoPerf's parametrisation of beta1): the config value
    is ``1 - x``, so ``[0.01, 0.5]`` gives beta1 between 0.5 and 0.99."""

    key: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def log_axis(self) -> bool:
        """Plot against a log axis (for one_minus_log: the axis is 1 - value)."""
        return self.kind in ("log", "one_minus_log")

    def axis_value(self, value: Any) -> Any:
        """The value on the searched axis: ``1 - value`` for one_minus_log, else the value."""
        return 1.0 - float(value) if self.kind == "one_minus_log" else value

    def position(self, value: Any) -> float | None:
        """Where ``value`` sits in the range, 0 (low edge) to 1 (high edge), in the space's
        own scale (log for log spaces); None for a choice."""
        if self.kind == "choice" or self.low is None or self.high is None:
            return None
        x, lo, hi = float(self.axis_value(value)), float(self.low), float(self.high)
        if self.log_axis:
            x, lo, hi = math.log(x), math.log(lo), math.log(hi)
        return 0.5 if hi == lo else (x - lo) / (hi - lo)


@dataclass
class TrialRecord:
    """One trial as the analysis sees it. ``number`` is the trial's slot in the study
    (0 .. trials-1, reruns after them); a trial interrupted and run again keeps its number."""

    number: int
    state: State
    params: dict[str, Any]
    """Dotted config key -> the value the trial ran with."""
    value: float | None = None
    """The objective (None unless complete, or pruned with a last value)."""
    run_dir: str | None = None
    interventions: dict[str, int] = field(default_factory=dict)
    """The autopilot's counts: skips, rollbacks, quarantined, fp16_overflows."""
    reason: str | None = None
    """Why a trial is infeasible, failed or pruned (from the logbook or the error)."""
    best_step: int | None = None
    """The step of the evaluation the objective came from."""
    steps: int | None = None
    """The trial's train.steps."""
    seed: int = 0
    rerun_of: int | None = None
    """For a seed rerun: the number of the trial whose params it repeats."""
    duration_s: float | None = None

    @property
    def interventions_total(self) -> int:
        return sum(v for k, v in self.interventions.items() if k != "fp16_overflows")

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "state": self.state, "params": dict(self.params),
            "value": self.value, "run_dir": self.run_dir, "interventions": dict(self.interventions),
            "reason": self.reason, "best_step": self.best_step, "steps": self.steps,
            "seed": self.seed, "rerun_of": self.rerun_of, "duration_s": self.duration_s,
        }


@dataclass
class StudyView:
    """A study at one moment: enough to analyse, show and report it without Optuna."""

    name: str
    study_dir: Path
    metric: str
    """The run metric the objective is taken from, e.g. ``eval/accuracy``."""
    higher_is_better: bool
    objective: Literal["best", "final"]
    dims: list[Dimension]
    scientific: list[str]
    trials: list[TrialRecord]
    planned: int
    """How many trials the study asks for (reruns not counted)."""
    sampler: str = "quasirandom"

    @property
    def search(self) -> list[TrialRecord]:
        """The study's own trials (seed reruns excluded)."""
        return [t for t in self.trials if t.rerun_of is None]

    @property
    def reruns(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.rerun_of is not None]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    def ranked(self) -> list[TrialRecord]:
        """Complete search trials, best first."""
        done = [t for t in self.search if t.state == "complete" and t.value is not None]
        return sorted(done, key=lambda t: -t.value if self.higher_is_better else t.value)  # type: ignore[operator]
