"""Step-count defaults that fit the run.

Several defaults are counts of steps sized for the default 1000-step run (100 warmup steps,
a 128-step spike window, evaluation every 200 steps...). In a short run they would refuse
to start (warmup longer than the run), never act (a spike test silent for its first 64
steps), or never happen (no evaluation or checkpoint before the end). A default the user
or the config file did not set is therefore scaled to ``train.steps`` when the run is
shorter than the one it was sized for; ``trainwell config show`` says which and why. A
value that was set is kept as it is, and the usual checks name it if it cannot work.

A built-in task's preset (digits warms up for 20 of its 400 steps) is a default too, as far
as the user is concerned: sized for the task's own run, it is scaled by train.steps / the
task's train.steps when the run is shorter, keeping the share of the run the task chose.
That rule, rather than FITS's, because it is the identity at the task's own length (the
default run of a task is exactly what its author measured) and it changes nothing the
author decided but the length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Fit:
    section: str
    key: str
    rule: Callable[[int], int]
    """train.steps -> the value for that run (used only when below the default)."""
    why: str
    least: int = 0
    """The smallest value that works: a task's preset is scaled down no further."""


FITS = (
    Fit("schedule", "warmup_steps", lambda s: s // 10,
        "a tenth of the run, the share the default 100 is of the default 1000-step run"),
    Fit("guards", "spike_window", lambda s: max(8, s // 2),
        "half the run: the spike test is silent for its first half window, so it then "
        "watches the last three quarters of the run", least=8),
    Fit("train", "eval_every", lambda s: max(1, s // 5),
        "five evaluations in the run, as the default 200 gives the default 1000-step run", least=1),
    Fit("checkpoint", "every_steps", lambda s: max(1, s // 2),
        "a checkpoint half-way, as the default 500 gives the default 1000-step run a "
        "mid-run rollback target", least=1),
    Fit("instruments", "every", lambda s: max(1, s // 4),
        "four measurements in the run; at the default 64, a run under 64 steps is measured "
        "once, at step 0", least=1),
)


@dataclass(frozen=True)
class Preset:
    """The step counts a task set for its own run, that the user left to it."""

    task: str
    steps: int
    """The run they were sized for: the task's train.steps (else the default's)."""
    values: dict[str, int]
    """Dotted key of FITS -> the task's value."""

    def fit(self, fit: Fit, steps: int) -> tuple[int, str] | None:
        """(the value for a ``steps``-step run, why), or None to keep the preset: the
        preset's share of the task's run, no lower than ``fit.least``."""
        preset = self.values.get(f"{fit.section}.{fit.key}")
        if preset is None:
            return None
        value = max(fit.least, preset * steps // self.steps)
        if value >= preset:
            return None
        return value, (f"fitted to train.steps = {steps}: {value} instead of the {self.task} task's "
                       f"{preset}, which it sets for its {self.steps}-step run: the same share of the "
                       "run. Set it to override.")


def task_preset(task: str, preset: Mapping[str, Any], user: Mapping[str, Any], default_steps: int) -> Preset | None:
    """The step counts of FITS that the task ``task`` presets (``preset``, a nested dict)
    and the user's ``user`` (file, overrides, base) does not set; None when there are none."""
    values = {}
    for fit in FITS:
        section = preset.get(fit.section) or {}
        if fit.key in section and not _is_set(user.get(fit.section), fit.key):
            values[f"{fit.section}.{fit.key}"] = section[fit.key]
    if not values:
        return None
    return Preset(task, (preset.get("train") or {}).get("steps", default_steps), values)


def fit_defaults(raw: Any, sections: Mapping[str, type[BaseModel]],
                 preset: Preset | None = None) -> tuple[Any, dict[str, str]]:
    """(``raw`` with the unset step-count defaults that do not fit ``train.steps`` filled in,
    {dotted key: a line saying what was fitted and why}). ``raw`` is the RunConfig's input
    (a dict whose sections are dicts or section models); anything else is returned as is.
    ``preset``: the values in ``raw`` that a task preset rather than the user set (they are
    scaled from the task's run length, Preset.fit)."""
    if not isinstance(raw, Mapping):
        return raw, {}
    steps = _value(raw.get("train"), "steps", sections["train"])
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        return raw, {}  # validation reports a bad train.steps
    out, notes = dict(raw), {}
    for fit in FITS:
        section = out.get(fit.section)
        if preset is not None and f"{fit.section}.{fit.key}" in preset.values:
            fitted = preset.fit(fit, steps)
        elif _is_set(section, fit.key):
            continue  # set by the user: kept as it is
        else:
            fitted = _fit_default(fit, steps, sections[fit.section].model_fields[fit.key].default)
        if fitted is not None:
            out[fit.section] = _with(section, fit.key, fitted[0])
            notes[f"{fit.section}.{fit.key}"] = fitted[1]
    return out, notes


def _fit_default(fit: Fit, steps: int, default: int) -> tuple[int, str] | None:
    """(the value for a ``steps``-step run, why), or None when the default fits."""
    value = fit.rule(steps)
    if value >= default:
        return None
    return value, (f"fitted to train.steps = {steps}: {value} instead of the default {default}: "
                   f"{fit.why}. Set it to override.")


def _value(section: Any, key: str, cls: type[BaseModel]) -> Any:
    if isinstance(section, BaseModel):
        return getattr(section, key)
    if isinstance(section, Mapping) and key in section:
        return section[key]
    return cls.model_fields[key].default


def _is_set(section: Any, key: str) -> bool:
    if isinstance(section, BaseModel):
        return key in section.model_fields_set
    return isinstance(section, Mapping) and key in section


def _with(section: Any, key: str, value: int) -> Any:
    if isinstance(section, BaseModel):
        return section.model_copy(update={key: value})
    if section is None:
        return {key: value}
    if isinstance(section, Mapping):
        return {**section, key: value}
    return section  # not a section: validation reports it
