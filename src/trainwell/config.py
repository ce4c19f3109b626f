"""RunConfig: the whole run as validated data, loaded from TOML plus dotted overrides.

Every component owns its section (``optim/config.py`` holds ``[optim]`` and ``[schedule]``,
``train/config.py`` holds ``[train]``...); this module composes them, merges the task's
defaults under the user's values, and reports every problem at once with the key that is
wrong and what would be valid.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from trainwell.checkpoint.config import CheckpointConfig
from trainwell.dist.config import DistConfig
from trainwell.distill.config import DistillConfig
from trainwell.drills import FaultsConfig
from trainwell.errors import ConfigError
from trainwell.guards.config import GuardsConfig
from trainwell.instruments.config import InstrumentsConfig
from trainwell.models.config import ModelConfig
from trainwell.optim.config import OptimConfig, ScheduleConfig
from trainwell.run_length import fit_defaults, task_preset
from trainwell.section import Section
from trainwell.sinks.config import LogConfig
from trainwell.tasks.config import TaskConfig
from trainwell.train.config import ClipConfig, EMAConfig, TrainConfig

DEFAULT_TASK = "bytes-lm"


class RunConfig(Section):
    """A whole run. Round-trips to TOML; the resolved config is saved in every run directory."""

    seed: int = 0
    """Seed of every random number generator (python, numpy, torch). Same config + seed on CPU gives the same numbers."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Numeric precision of forward/backward: fp32, bf16 autocast, or fp16 autocast with dynamic loss scaling. 'auto' = bf16 on a GPU that supports it, fp32 on CPU (bf16 autocast is slower than fp32 on most CPUs). Master weights and norms stay fp32."""
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    instruments: InstrumentsConfig = Field(default_factory=InstrumentsConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    dist: DistConfig = Field(default_factory=DistConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    _fitted: dict[str, str] = PrivateAttr(default_factory=dict)
    """Values chosen for this run rather than set: dotted key -> what and why (run_length.py, with_value)."""

    @model_validator(mode="wrap")
    @classmethod
    def _fit_to_run(cls, data: Any, handler: Any, info: ValidationInfo) -> RunConfig:
        """Unset step-count defaults sized for a longer run are scaled to train.steps first,
        and so are the task's presets the user left to it (the validation context's
        ``preset``, a run_length.Preset: resolve() passes it)."""
        sections = {k: f.annotation for k, f in cls.model_fields.items() if isinstance(f.annotation, type)}
        data, notes = fit_defaults(data, sections, (info.context or {}).get("preset"))
        cfg = handler(data)
        if notes:
            cfg._fitted = notes
        return cfg

    def __eq__(self, other: object) -> bool:
        """Equal when every value is (whether a value was fitted or written does not count:
        a run directory's config.toml, loaded again, equals the config that wrote it)."""
        if not isinstance(other, RunConfig):
            return NotImplemented
        return self.__dict__ == other.__dict__

    @property
    def fitted(self) -> dict[str, str]:
        """Values the config did not set that were chosen for this run (step-count defaults
        scaled to a short run, a DataLoader's batch size): dotted key -> what and why."""
        return dict(self._fitted)

    def with_value(self, key: str, value: Any, why: str) -> RunConfig:
        """A copy with the dotted ``key`` ('section.name') set to ``value``, a value taken from
        elsewhere than the config (the batch size of the user's DataLoader: api.py), checked
        again with the rest; ``why`` goes with it into ``fitted`` (``config show`` and the
        run's config record say where it came from)."""
        section, _, name = key.partition(".")
        raw: dict[str, Any] = {k: getattr(self, k) for k in type(self).model_fields}
        raw[section] = getattr(self, section).model_copy(update={name: value})
        try:
            cfg = RunConfig.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(_format_validation(e)) from None
        cfg._fitted = {**self._fitted, key: why}
        return cfg

    @model_validator(mode="after")
    def _cross_field(self) -> RunConfig:
        problems = []
        if self.schedule.name != "constant" and self.schedule.warmup_steps >= self.train.steps:
            problems.append(
                f"schedule.warmup_steps ({self.schedule.warmup_steps}) must be < train.steps "
                f"({self.train.steps}) for the {self.schedule.name!r} schedule"
            )
        if self.train.accumulate > self.train.batch_size:
            problems.append(
                f"train.accumulate ({self.train.accumulate}) must be <= train.batch_size "
                f"({self.train.batch_size}): batch_size is the whole update, split into accumulate micro-batches"
            )
        if self.model.parametrization == "mup":
            from trainwell.mup.optim import optimizer_problems

            problems += optimizer_problems(self.optim.name)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def advice(self) -> list[str]:
        """Valid settings that are probably a mistake, each with its reason and fix (logged
        when a run starts, listed by ``trainwell config show``)."""
        from trainwell.optim.config import advice

        return advice(self.optim, self.schedule)

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.model_dump(mode="json")))

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(self.model_dump(mode="json"))


# ---------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    *,
    check_task: bool = True,
) -> RunConfig:
    """Build a RunConfig from (lowest to highest priority): the task's defaults, ``base``
    (a nested dict, e.g. from the Python API), the TOML file at ``path``, and ``overrides``
    (``"optim.lr=3e-4"``). Raises ConfigError listing every problem."""
    raw: dict[str, Any] = copy.deepcopy(dict(base or {}))
    source = None
    if path is not None:
        source = str(path)
        raw = deep_merge(raw, read_toml(path))
    problems: list[str] = []
    try:
        raw = deep_merge(raw, parse_overrides(overrides))
    except ConfigError as e:
        problems.extend(e.problems)
    return resolve(raw, source=source, problems=problems, check_task=check_task)


def as_run_config(config: RunConfig | Mapping[str, Any] | str | Path | None) -> RunConfig:
    """A RunConfig as the Python API takes one: as it is, a nested dict (over the task's
    defaults), or a TOML path (None: the defaults)."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return load_config(base=config)
    return load_config(config)


def resolve(
    raw: Mapping[str, Any],
    *,
    source: str | None = None,
    problems: list[str] | None = None,
    check_task: bool = True,
) -> RunConfig:
    """Validate a nested dict after merging the chosen task's defaults underneath it (its
    step counts, sized for the task's run, are scaled to a shorter one unless ``raw`` sets
    them: run_length.Preset). ``check_task=False`` when the caller brings its own Task object (the Python API)."""
    problems = list(problems or [])
    task = raw.get("task")
    task_name = task.get("name", DEFAULT_TASK) if isinstance(task, Mapping) else DEFAULT_TASK
    defaults = _task_defaults(task_name, problems if check_task else [])
    merged = deep_merge(defaults, raw)
    problems.extend(_registry_problems(merged))
    preset = task_preset(str(task_name), defaults, raw, TrainConfig.model_fields["steps"].default)
    try:
        cfg = RunConfig.model_validate(merged, context={"preset": preset})
    except ValidationError as e:
        problems.extend(_format_validation(e))
        cfg = None
    if problems:
        raise ConfigError(problems, source=source)
    assert cfg is not None
    return cfg


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"config path {str(p)!r} is a directory, expected a .toml file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (TOML must be UTF-8)") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "task.name=digits"]`` -> nested dict. Values are read as TOML
    (numbers, booleans, lists, quoted strings); anything else is a plain string."""
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=3e-4")
            continue
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"--set {item!r}: {part!r} is not a section")
                break
        else:
            node[parts[-1]] = parse_value(text.strip())
    if problems:
        raise ConfigError(problems)
    return out


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(low))
    for k, v in high.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ---------------------------------------------------------------- describing


def describe(cfg: RunConfig) -> str:
    """The resolved config as TOML with each field's description above it."""
    lines: list[str] = []

    def emit(model: BaseModel, prefix: str) -> None:
        subsections = []
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                subsections.append((name, value))
                continue
            if info.description:
                for chunk in _wrap(info.description):
                    lines.append(f"# {chunk}")
            if f"{prefix}{name}" in cfg.fitted:
                lines.extend(f"# {chunk}" for chunk in _wrap(cfg.fitted[f"{prefix}{name}"]))
            if value is None:
                lines.append(f"# {name} = (unset)")
            else:
                lines.append(f"{name} = {_inline(_jsonable(value))}")
        for name, sub in subsections:
            lines.append("")
            lines.append(f"[{prefix}{name}]")
            emit(sub, f"{prefix}{name}.")

    emit(cfg, "")
    return "\n".join(lines) + "\n"


def field_names(model_cls: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree (for suggestions)."""
    names = []
    for name, info in model_cls.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names.extend(field_names(ann, f"{prefix}{name}."))
        else:
            names.append(f"{prefix}{name}")
    return names


# ---------------------------------------------------------------- helpers


def _task_defaults(task_name: Any, problems: list[str]) -> dict[str, Any]:
    if not isinstance(task_name, str):
        return {}
    from trainwell.tasks import TASKS

    if task_name in TASKS:
        return copy.deepcopy(TASKS.get(task_name).defaults)
    if ":" not in task_name:
        problems.append(TASKS.unknown(task_name) + ", or a user entry point 'pkg.module:function'")
    return {}


def _registry_problems(raw: Mapping[str, Any]) -> list[str]:
    problems = []
    name = raw.get("optim", {}).get("name") if isinstance(raw.get("optim"), Mapping) else None
    if isinstance(name, str) and ":" not in name:  # 'pkg.mod:make_submission': a user's optimizer
        from trainwell.optim import OPTIMIZERS

        if name not in OPTIMIZERS:
            problems.append(OPTIMIZERS.unknown(name))
    return problems


def _format_validation(e: ValidationError) -> list[str]:
    valid_keys = field_names()
    out = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, valid_keys, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            section = key.rpartition(".")[0]
            siblings = [k.rpartition(".")[2] for k in valid_keys if k.rpartition(".")[0] == section]
            valid = f"; valid keys here: {', '.join(siblings)}" if siblings and not hint else ""
            out.append(f"unknown key {key!r}{hint}{valid}")
        elif err["type"] in ("model_type", "dict_type") and err["loc"]:
            out.append(f"{key}: expected a section (a table of keys), got {err['input']!r}")
        elif not err["loc"]:  # a cross-field check: the message names its keys
            out.extend(str(err["ctx"]["error"]).split("; ") if "ctx" in err else [err["msg"]])
        else:
            msg = err["msg"]
            out.append(f"{key}: {msg[0].lower() + msg[1:]}, got {err['input']!r}")
    return out


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def _inline(value: Any) -> str:
    """A TOML value on one line (tables inline), so every key stays in its section."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + " }" if value else "{}"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def _wrap(text: str, width: int = 96) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
