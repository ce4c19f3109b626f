"""The search space: parsing ``[tune.space]`` into Dimensions, checking every key and bound
against the RunConfig, the deterministic point sequences (Halton, random, grid), and turning
a trial's parameters into its run config.

A parameter is stored in Optuna under its config key with its value on the searched axis
(``1 - beta1`` for one_minus_log); ``config_value`` turns it back into the config's value.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.config import RunConfig, field_names, resolve
from trainwell.errors import ConfigError
from trainwell.tune.records import Dimension

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from trainwell.tune.config import Study, TuneConfig

KINDS = ("log", "uniform", "int", "choice", "one_minus_log")
_INDEXED = re.compile(r"^(?P<base>[\w.]+)\[(?P<index>\d+)\]$")


# ---------------------------------------------------------------- parsing and checking


def parse_space(tune: TuneConfig, raw: Mapping[str, Any], run: RunConfig, problems: list[str]) -> list[Dimension]:
    """Dimensions of ``tune.space``, each checked: a known key, a valid range, and every
    bound (or choice) accepted by the RunConfig. Problems are appended, all of them."""
    dims = []
    known = set(field_names())
    for key, spec in tune.space.items():
        dim = _dimension(key, spec, known, run, problems)
        if dim is not None and _bounds_valid(dim, raw, problems):
            dims.append(dim)
    keys = {d.key for d in dims}
    for key in tune.scientific:
        if key not in tune.space:
            problems.append(f"tune.scientific: {key!r} is not a key of [tune.space] (a scientific "
                            "hyperparameter must be searched; fixed values belong in the run config)")
    if tune.sampler == "grid" and keys and tune.budget is None and tune.trials is not None:
        size = len(grid_points(dims, tune.grid_points))
        if tune.trials != size:
            problems.append(f"tune.trials ({tune.trials}) differs from the grid's {size} points: leave "
                            "tune.trials unset for a grid, or change tune.grid_points")
    if not tune.space and tune.budget != "oneshot":
        problems.append("tune.space is empty: add at least one key to search, e.g. "
                        "\"optim.lr\" = { log = [1e-4, 1e-1] } (or tune.budget = \"oneshot\")")
    return dims


def _dimension(key: str, spec: Any, known: set[str], run: RunConfig, problems: list[str]) -> Dimension | None:
    where = f"tune.space.{key!r}"
    match = _INDEXED.match(key)
    base = match["base"] if match else key
    if base not in known:
        import difflib

        close = difflib.get_close_matches(base, sorted(known), n=1, cutoff=0.6)
        problems.append(f"{where}: unknown config key" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return None
    if match:
        current = _lookup(run.model_dump(mode="python"), base)
        if not isinstance(current, (list, tuple)) or int(match["index"]) >= len(current):
            problems.append(f"{where}: {base!r} is not a list with an element {match['index']}")
            return None
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        problems.append(f"{where}: expected one of {{ log = [lo, hi] }}, {{ uniform = [lo, hi] }}, "
                        f"{{ int = [lo, hi] }}, {{ choice = [...] }}, {{ one_minus_log = [lo, hi] }}; got {spec!r}")
        return None
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list) or not values or any(isinstance(v, (list, dict)) for v in values):
            problems.append(f"{where}: choice needs a non-empty list of plain values, got {values!r}")
            return None
        return Dimension(key, "choice", choices=tuple(values))
    return _range(where, key, kind, values, problems)


def _range(where: str, key: str, kind: str, values: Any, problems: list[str]) -> Dimension | None:
    numbers = isinstance(values, list) and len(values) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numbers:
        problems.append(f"{where}: {kind} needs [low, high], two numbers; got {values!r}")
        return None
    lo, hi = values
    if not lo < hi:
        problems.append(f"{where}: {kind} needs low < high, got [{lo}, {hi}]")
        return None
    if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
        problems.append(f"{where}: int needs whole-number bounds, got [{lo}, {hi}]")
        return None
    if kind == "log" and lo <= 0:
        problems.append(f"{where}: log needs low > 0 (a log scale), got {lo}")
        return None
    if kind == "one_minus_log" and not (0 < lo and hi < 1):
        problems.append(f"{where}: one_minus_log searches 1 - value in (0, 1) on a log scale; "
                        f"needs 0 < low < high < 1, got [{lo}, {hi}]")
        return None
    if kind == "int":
        return Dimension(key, "int", int(lo), int(hi))
    return Dimension(key, kind, float(lo), float(hi))  # type: ignore[arg-type]


def _bounds_valid(dim: Dimension, raw: Mapping[str, Any], problems: list[str]) -> bool:
    """Every edge of the range (or every choice) must make a valid RunConfig on its own."""
    values = list(dim.choices) if dim.kind == "choice" else [
        config_value(dim, dim.low), config_value(dim, dim.high)]
    ok = True
    for value in values:
        try:
            resolve(with_params(raw, {dim.key: value}))
        except ConfigError as e:
            ok = False
            mine = [p for p in e.problems if _base(dim.key) in p] or e.problems
            problems.extend(f"tune.space.{dim.key!r} = {value!r}: {p}" for p in mine)
    return ok


# ---------------------------------------------------------------- values and configs


def config_value(dim: Dimension, x: Any) -> Any:
    """The config's value for a value ``x`` on the searched axis."""
    if dim.kind == "one_minus_log":
        return 1.0 - float(x)
    if dim.kind == "int":
        return int(x)
    if dim.kind in ("log", "uniform"):
        return float(x)
    return x


def with_params(raw: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a nested run config) with ``params`` (dotted key -> config value) set in it."""
    out = copy.deepcopy(dict(raw))
    for key, value in params.items():
        match = _INDEXED.match(key)
        if match:
            parts = match["base"].split(".")
            current = _lookup(out, match["base"])
            if current is None:
                current = _lookup(resolve(out).model_dump(mode="python"), match["base"])
            items = list(current)
            items[int(match["index"])] = value
            value = items
        else:
            parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def distributions(dims: list[Dimension]) -> dict[str, BaseDistribution]:
    """Optuna's distribution of each dimension (on the searched axis)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for d in dims:
        if d.kind == "choice":
            out[d.key] = CategoricalDistribution(d.choices)
        elif d.kind == "int":
            out[d.key] = IntDistribution(int(d.low), int(d.high))  # type: ignore[arg-type]
        else:
            out[d.key] = FloatDistribution(d.low, d.high, log=d.kind != "uniform")  # type: ignore[arg-type]
    return out


# ---------------------------------------------------------------- deterministic point sequences


def points(dims: list[Dimension], tune: TuneConfig, start: int, stop: int) -> list[dict[str, Any]] | None:
    """The search points ``start .. stop-1`` of the study (on the searched axis), the same
    for the same seed whoever asks; None for the adaptive samplers (tpe, gp), which choose
    each point from the trials before it."""
    if tune.sampler in ("tpe", "gp") or not dims:
        return None
    if tune.sampler == "grid":
        grid = grid_points(dims, tune.grid_points)
        return grid[start:stop]
    if tune.sampler == "quasirandom":
        from scipy.stats import qmc

        halton = qmc.Halton(d=len(dims), scramble=True, seed=tune.seed)
        halton.fast_forward(start)
        cube = halton.random(stop - start)
    else:
        cube = np.random.default_rng(tune.seed).random((stop, len(dims)))[start:]
    return [{d.key: _from_unit(d, float(u)) for d, u in zip(dims, row, strict=True)} for row in cube]


def grid_points(dims: list[Dimension], per_dim: int) -> list[dict[str, Any]]:
    axes = [_grid_axis(d, per_dim) for d in dims]
    return [dict(zip([d.key for d in dims], combo, strict=True)) for combo in itertools.product(*axes)]


def _grid_axis(d: Dimension, n: int) -> list[Any]:
    if d.kind == "choice":
        return list(d.choices)
    if d.kind == "int":
        return sorted({round(v) for v in np.linspace(d.low, d.high, n)})  # type: ignore[arg-type]
    if d.kind == "uniform":
        return [float(v) for v in np.linspace(d.low, d.high, n)]  # type: ignore[arg-type]
    return [float(v) for v in np.geomspace(d.low, d.high, n)]  # type: ignore[arg-type]


def _from_unit(d: Dimension, u: float) -> Any:
    """Map ``u`` in [0, 1) onto the dimension's axis, uniformly in its own scale."""
    if d.kind == "choice":
        return d.choices[min(int(u * len(d.choices)), len(d.choices) - 1)]
    lo, hi = float(d.low), float(d.high)  # type: ignore[arg-type]
    if d.kind == "int":
        return int(min(lo + math.floor(u * (hi - lo + 1)), hi))
    if d.kind == "uniform":
        return min(max(lo + u * (hi - lo), lo), hi)
    return min(max(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), lo), hi)


def planned_trials(study: Study) -> int:
    """How many trials the study runs: the budget, tune.trials, or the grid's size."""
    tune = study.tune
    if tune.sampler == "grid" and tune.trials is None and tune.budget is None and study.dims:
        return len(grid_points(study.dims, tune.grid_points))
    return tune.planned


# ---------------------------------------------------------------- helpers


def _base(key: str) -> str:
    match = _INDEXED.match(key)
    return match["base"] if match else key


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
