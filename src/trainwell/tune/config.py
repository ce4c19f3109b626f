"""The ``[tune]`` table of a study file, and the study file itself: any run config plus a
``[tune]`` table. Everything is checked before the first trial starts, every problem at once."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from trainwell.config import RunConfig, deep_merge, parse_overrides, read_toml, resolve
from trainwell.errors import ConfigError
from trainwell.section import Section
from trainwell.tune.records import Dimension

BUDGETS: dict[str, int] = {"oneshot": 1, "small": 25, "medium": 50, "large": 75}
"""Crowded Valley's tuning budgets (Schmidt et al. 2021): one-shot runs the defaults as they
are; small, medium and large are 25, 50 and 75 trials of random search."""

DEFAULT_TRIALS = 24


class TuneConfig(Section):
    """The ``[tune]`` table: what to search, how, and for how long."""

    name: str = "study"
    """The study's name: its directory is studies/<name>-<timestamp>/, and the name of the study in a shared storage."""
    trials: int | None = Field(None, ge=1)
    """How many trials the study runs (default 24; or set by budget). Running the study again with a larger number adds trials."""
    budget: Literal["oneshot", "small", "medium", "large"] | None = None
    """A Crowded Valley budget instead of trials: oneshot (the config's own values, one trial), small (25), medium (50), large (75)."""
    sampler: Literal["quasirandom", "random", "grid", "tpe", "gp"] = "quasirandom"
    """quasirandom: scrambled Halton, the Tuning Playbook's choice while exploring (even coverage, no adaptivity to confound the analysis); random; grid (1-2 keys); tpe or gp to exploit once the space is understood."""
    seed: int = 0
    """Seed of the sampler: the same seed draws the same points, with any number of workers."""
    objective: Literal["best", "final"] = "best"
    """best: the best evaluation during training (the Playbook: the best checkpoint is what we keep); final: the last one."""
    scientific: list[str] = Field(default_factory=list)
    """The keys whose effect the study measures; every other key of the space is a nuisance parameter, optimised away in the isolation plots."""
    space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Config key -> { log = [lo, hi] } | { uniform = [lo, hi] } | { int = [lo, hi] } | { choice = [...] } | { one_minus_log = [lo, hi] } (searches 1 - value on a log scale: AlgoPerf's beta1). A list element is key[i], e.g. optim.betas[0]."""
    grid_points: int = Field(5, ge=2)
    """grid: values per continuous key (choices are taken as they are)."""
    pruner: Literal["none", "median", "halving"] = "none"
    """Stop hopeless trials early on their evaluations: Optuna's median rule or successive halving. Off by default: pruning favours fast starters, which the Playbook warns against when comparing settings."""

    @property
    def planned(self) -> int:
        if self.budget is not None:
            return BUDGETS[self.budget]
        return self.trials if self.trials is not None else DEFAULT_TRIALS


class Study:
    """A study file, checked: the trials' base config (raw and resolved), the ``[tune]``
    table and the search space as Dimensions."""

    def __init__(self, base: dict[str, Any], run: RunConfig, tune: TuneConfig, dims: list[Dimension]) -> None:
        self.base, self.run, self.tune, self.dims = base, run, tune, dims

    @property
    def searched(self) -> list[Dimension]:
        """The dimensions trials draw from: none for a one-shot study (the config as it is)."""
        return [] if self.tune.budget == "oneshot" else self.dims

    def to_dict(self) -> dict[str, Any]:
        return {**copy.deepcopy(self.base), "tune": self.tune.model_dump(mode="json", exclude_none=True)}


def load_study(
    source: str | Path | Mapping[str, Any] | Study,
    overrides: Sequence[str] = (),
    *,
    trials: int | None = None,
) -> Study:
    """Read and check a study: a TOML path, a nested dict or a Study. ``overrides`` apply to
    the run config and the tune table alike (``tune.trials=8``, ``train.steps=200``)."""
    from trainwell.tune.space import parse_space

    if isinstance(source, Study):
        if not overrides and trials is None:
            return source
        source = source.to_dict()
    name = None if isinstance(source, Mapping) else str(source)
    raw = copy.deepcopy(dict(source)) if isinstance(source, Mapping) else read_toml(source)
    problems: list[str] = []
    try:
        raw = deep_merge(raw, parse_overrides(overrides))
    except ConfigError as e:
        problems.extend(e.problems)
    table = raw.pop("tune", None)
    if table is None:
        problems.append("no [tune] table: a study file is a run config plus a [tune] table "
                        "with at least a space, e.g. [tune.space] \"optim.lr\" = { log = [1e-4, 1e-1] }")
        table = {}
    if trials is not None:
        table = {**table, "trials": trials}
    tune = _tune_table(table, problems)
    run = _run_config(raw, problems)
    checked = tune if tune is not None else _space_only(table)  # the space's problems too, at once
    dims = parse_space(checked, raw, run, problems) if checked is not None and run is not None else []
    if problems:
        raise ConfigError(problems, source=name)
    assert tune is not None and run is not None
    return Study(raw, run, tune, dims)


def _tune_table(table: Any, problems: list[str]) -> TuneConfig | None:
    if not isinstance(table, Mapping):
        problems.append(f"tune: expected a table, got {table!r}")
        return None
    try:
        tune = TuneConfig.model_validate(dict(table))
    except ValidationError as e:
        for err in e.errors():
            key = ".".join(["tune", *(str(p) for p in err["loc"])])
            if err["type"] == "extra_forbidden":
                valid = ", ".join(TuneConfig.model_fields)
                problems.append(f"unknown key {key!r}; valid keys here: {valid}")
            else:
                problems.append(f"{key}: {err['msg'][0].lower() + err['msg'][1:]}, got {err['input']!r}")
        return None
    if tune.budget is not None and tune.trials is not None and tune.trials != BUDGETS[tune.budget]:
        problems.append(f"tune.trials ({tune.trials}) and tune.budget ({tune.budget!r} = "
                        f"{BUDGETS[tune.budget]} trials) disagree: set one of them")
        return None
    return tune


def _space_only(table: Any) -> TuneConfig | None:
    """The table's space and scientific keys alone, when the rest of the table is wrong."""
    if not isinstance(table, Mapping):
        return None
    try:
        return TuneConfig.model_validate({k: table[k] for k in ("space", "scientific") if k in table})
    except ValidationError:
        return None


def _run_config(raw: dict[str, Any], problems: list[str]) -> RunConfig | None:
    try:
        return resolve(raw)
    except ConfigError as e:
        problems.extend(e.problems)
        return None
