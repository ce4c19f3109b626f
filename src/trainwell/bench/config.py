"""The ``[bench]`` table and the plan it makes: one tune study per problem, algorithm (and,
for the budget protocol, schedule), each a study directory inside the benchmark's folder.

Protocols, each a way of running those studies:

- ``oneshot``: the algorithm's defaults with ``seeds`` seeds (Crowded Valley's one-shot).
- ``deepobs``: the learning rate alone on a log grid (36 points from 1e-5 to 1e2), the best
  by the final validation metric rerun with 10 seeds (DeepOBS's suggested protocol).
- ``budget``: random search of the algorithm's space with 25 / 50 / 75 trials, per schedule,
  the best rerun with 10 seeds (Crowded Valley).
- ``algoperf``: time to the problem's validation target. External tuning: 3 studies of 5
  quasi-random trials of the algorithm's space; self-tuning: 3 runs at the defaults. Scored
  with performance profiles (r_max = 4) and the speed-up over a reference (``algoperf.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from trainwell.bench.algorithms import (
    DEFAULT_ALGORITHMS,
    algorithm_problems,
    merged,
    resolve_algorithm,
)
from trainwell.bench.problems import CPU_SUITE, PROBLEMS, Problem
from trainwell.config import deep_merge, parse_overrides, read_toml
from trainwell.errors import ConfigError
from trainwell.section import Section
from trainwell.tune.config import BUDGETS

FINAL_SEEDS = 10
"""Seeds of the final comparison in deepobs and budget (both papers use 10)."""


class BenchConfig(Section):
    """The ``[bench]`` table."""

    name: str = "bench"
    """The benchmark's name: its folder is benchmarks/<name>-<timestamp>/ unless --out."""
    problems: list[str] = Field(default_factory=lambda: list(CPU_SUITE))
    """Test problems (trainwell bench problems lists them); the default is the CPU suite."""
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    """Optimizer names, or user submissions 'my_pkg.my_mod:make_submission'."""
    protocol: Literal["oneshot", "deepobs", "budget", "algoperf"] = "oneshot"
    """oneshot: defaults with several seeds; deepobs: an lr grid, the best with 10 seeds; budget: random search per schedule, the best with 10 seeds; algoperf: time to the validation target."""
    ruleset: Literal["external", "self"] = "external"
    """algoperf: external tuning (studies of quasi-random trials of the algorithm's space) or self-tuning (the defaults, no search)."""
    studies: int = Field(3, ge=1)
    """algoperf: independent studies; an algorithm's time is the median over them (AlgoPerf v0.6: 3)."""
    study_trials: int = Field(5, ge=1)
    """algoperf, external tuning: trials per study; each study counts its fastest (AlgoPerf: 5)."""
    reference: str = "nadam"
    """algoperf: the algorithm the speed-up is measured against (AlgoPerf's baseline is NAdamW)."""
    budget: Literal["small", "medium", "large"] = "small"
    """budget protocol: 25, 50 or 75 trials of random search (Crowded Valley)."""
    schedules: list[Literal["constant", "warmup_cosine", "cosine_restarts", "trapezoidal"]] = Field(
        default_factory=lambda: ["constant", "warmup_cosine", "cosine_restarts", "trapezoidal"])
    """budget protocol: the schedules each algorithm is tuned with (Crowded Valley's four)."""
    seeds: int = Field(3, ge=1)
    """oneshot: seeds per algorithm and problem (3: a first look; 10 for a verdict)."""
    lr_points: int = Field(36, ge=2)
    """deepobs: points of the log learning-rate grid from 1e-5 to 1e2 (DeepOBS: 36)."""
    autopilot: bool = True
    """Whether the runs fly with the autopilot (skips, quarantine, rollbacks with a lower lr: its interventions are counted per line, and deepobs's stable lr leaves out the runs it stepped into), as a user's run would. false: the algorithm alone, as DeepOBS and AlgoPerf measure it (guards.enabled = false): a run that blows up ends with a non-finite value, infeasible."""


@dataclass(frozen=True)
class StudyPlan:
    """One study of the benchmark."""

    problem: Problem
    algorithm: str
    schedule: str
    study: dict[str, Any]
    """A tune study (run config + [tune])."""
    rerun_seeds: int
    """Seeds to add to the best trial once the search is done (0: none)."""
    path: Path
    """Relative to the benchmark's folder."""
    study_index: int = 0
    """algoperf: which of the independent studies."""


def load_bench(source: str | Path | Mapping[str, Any] | None, overrides: Sequence[str] = ()) -> BenchConfig:
    """A BENCH.toml (its ``[bench]`` table), a dict, or None for the defaults; ``overrides``
    as ``bench.seeds=5``. Every problem at once, as a ConfigError."""
    raw: dict[str, Any] = {}
    name = None
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    elif source is not None:
        name = str(source)
        raw = read_toml(source)
    problems: list[str] = []
    try:
        raw = deep_merge(raw, parse_overrides(overrides))
    except ConfigError as e:
        problems.extend(e.problems)
    for key in raw:
        if key != "bench":
            problems.append(f"unknown table [{key}]: a benchmark file has one [bench] table")
    cfg = None
    try:
        cfg = BenchConfig.model_validate(raw.get("bench", {}))
    except ValidationError as e:
        for err in e.errors():
            key = ".".join(["bench", *(str(p) for p in err["loc"])])
            kind = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {kind}" + ("" if err["type"] == "extra_forbidden" else f", got {err['input']!r}"))
    if cfg is not None:
        problems.extend(_names(cfg))
    if problems:
        raise ConfigError(problems, source=name)
    assert cfg is not None
    return cfg


def _names(cfg: BenchConfig) -> list[str]:
    out = [PROBLEMS.unknown(p) for p in cfg.problems if p not in PROBLEMS]
    if cfg.protocol == "algoperf":
        out += [f"bench.problems: {p!r} has no validation target yet, so it cannot be timed to one; "
                "targets are set by benchmarks/bench_targets.py on the machine they are used on"
                for p in cfg.problems if p in PROBLEMS and PROBLEMS.get(p).target is None]
    out += algorithm_problems(cfg.algorithms)
    if not cfg.problems:
        out.append("bench.problems is empty")
    if not cfg.algorithms:
        out.append("bench.algorithms is empty")
    return out


def plan(cfg: BenchConfig) -> list[StudyPlan]:
    """The studies of the benchmark, in the order they run."""
    out = []
    for pname in cfg.problems:
        problem = PROBLEMS.get(pname)
        for aname in cfg.algorithms:
            if cfg.protocol == "algoperf":
                out += [_algoperf_study(cfg, problem, aname, k) for k in range(cfg.studies)]
                continue
            schedules = cfg.schedules if cfg.protocol == "budget" else ["constant"]
            for schedule in schedules:
                out.append(_study(cfg, problem, aname, schedule))
    return out


def _algoperf_study(cfg: BenchConfig, problem: Problem, aname: str, k: int) -> StudyPlan:
    """Study k: its own seed for the sampler and for the runs; one log row per step, so that
    the training time to each evaluation can be summed."""
    algo = resolve_algorithm(aname)
    schedule = _schedule("warmup_cosine", problem)  # AlgoPerf's baseline: warmup (5%), then cosine
    base = merged(problem.run_config(), algo.config, {"schedule": schedule, "log": {"every": 1}}, _autopilot(cfg))
    safe = aname.replace(":", "-").replace("/", "-")
    tune: dict[str, Any] = {"name": f"{problem.name}__{safe}__{cfg.ruleset}{k}", "objective": "best"}
    if cfg.ruleset == "external":
        base["seed"] = k
        tune |= {"sampler": "quasirandom", "seed": k, "trials": cfg.study_trials, "space": dict(algo.space)}
    else:
        tune |= {"sampler": "grid", "space": {"seed": {"choice": [k]}}}
    return StudyPlan(problem, aname, "warmup_cosine", {**base, "tune": tune}, 0,
                     Path(problem.name) / safe / f"{cfg.ruleset}-study{k}", k)


def _study(cfg: BenchConfig, problem: Problem, aname: str, schedule: str) -> StudyPlan:
    algo = resolve_algorithm(aname)
    base = merged(problem.run_config(), algo.config, {"schedule": _schedule(schedule, problem)}, _autopilot(cfg))
    safe = aname.replace(":", "-").replace("/", "-")
    name = f"{problem.name}__{safe}" + (f"__{schedule}" if cfg.protocol == "budget" else "")
    tune: dict[str, Any] = {"name": name, "objective": "final"}
    reruns = FINAL_SEEDS - 1
    if cfg.protocol == "oneshot":
        tune |= {"sampler": "grid", "space": {"seed": {"choice": list(range(cfg.seeds))}}}
        reruns = 0
    elif cfg.protocol == "deepobs":
        lo, hi = algo.lr_range
        tune |= {"sampler": "grid", "grid_points": cfg.lr_points, "space": {"optim.lr": {"log": [lo, hi]}}}
    else:
        tune |= {"sampler": "random", "trials": BUDGETS[cfg.budget], "space": dict(algo.space)}
    path = Path(problem.name) / safe / (schedule if cfg.protocol == "budget" else "")
    return StudyPlan(problem, aname, schedule, {**base, "tune": tune}, reruns, path)


def _autopilot(cfg: BenchConfig) -> dict[str, Any]:
    """The runs' guards section: the defaults, or none at all (``bench.autopilot = false``)."""
    return {} if cfg.autopilot else {"guards": {"enabled": False}}


def _schedule(name: str, problem: Problem) -> dict[str, Any]:
    """The schedule section: no warmup for constant (DeepOBS), 5% for the decaying ones
    (AlgoPerf's NAdamW baseline warms up over 5% of the budget)."""
    if name == "constant":
        return {"name": "constant", "warmup_steps": 0}
    steps = int(problem.config["train"]["steps"])
    return {"name": name, "warmup_steps": max(1, math.ceil(0.05 * steps)), "min_lr_ratio": 0.0}
