"""Step-count defaults that fit the run.

Several defaults are counts of steps sized for the default 1000-step run (100 warmup steps,
a 128-step spike window, evaluation every 200 steps...). In a short run they would refuse
to start (warmup longer than the run), never act (a spike test silent for its first 64
steps), or never happen (no evaluation or checkpoint before the end). A default the user,
the config file or the task did not set is therefore scaled to ``train.steps`` when the run
is shorter than the one it was sized for; ``trainwell config show`` says which and why. A
value that was set is kept as it is, and the usual checks name it if it cannot work.
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


FITS = (
    Fit("schedule", "warmup_steps", lambda s: s // 10,
        "a tenth of the run, the share the default 100 is of the default 1000-step run"),
    Fit("guards", "spike_window", lambda s: max(8, s // 2),
        "half the run: the spike test is silent for its first half window, so it then "
        "watches the last three quarters of the run"),
    Fit("train", "eval_every", lambda s: max(1, s // 5),
        "five evaluations in the run, as the default 200 gives the default 1000-step run"),
    Fit("checkpoint", "every_steps", lambda s: max(1, s // 2),
        "a checkpoint half-way, as the default 500 gives the default 1000-step run a "
        "mid-run rollback target"),
    Fit("instruments", "every", lambda s: max(1, s // 4),
        "four measurements in the run; at the default 64, a run under 64 steps is measured "
        "once, at step 0"),
)


def fit_defaults(raw: Any, sections: Mapping[str, type[BaseModel]]) -> tuple[Any, dict[str, str]]:
    """(``raw`` with the unset step-count defaults that do not fit ``train.steps`` filled in,
    {dotted key: a line saying what was fitted and why}). ``raw`` is the RunConfig's input
    (a dict whose sections are dicts or section models); anything else is returned as is."""
    if not isinstance(raw, Mapping):
        return raw, {}
    steps = _value(raw.get("train"), "steps", sections["train"])
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        return raw, {}  # validation reports a bad train.steps
    out, notes = dict(raw), {}
    for fit in FITS:
        section = out.get(fit.section)
        if _is_set(section, fit.key):
            continue
        default = sections[fit.section].model_fields[fit.key].default
        value = fit.rule(steps)
        if value >= default:
            continue
        out[fit.section] = _with(section, fit.key, value)
        notes[f"{fit.section}.{fit.key}"] = (f"fitted to train.steps = {steps}: {value} instead of "
                                             f"the default {default}: {fit.why}. Set it to override.")
    return out, notes


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
