"""The Sink contract: where metrics go. Two methods, nothing else.

A sink receives ``step`` (applied optimizer updates, an int) and a flat mapping of
``"group/name"`` keys (``"train/loss"``, ``"eval/accuracy"``, ``"sys/step_time_s"``) to
floats. Sinks only write: they never change training state. ``close()`` may be called
more than once.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from trainwell.errors import TrainwellError


@runtime_checkable
class Sink(Protocol):
    def write(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


def import_extra(module: str, key: str) -> ModuleType:
    """Import an optional dependency, or say which config key needs it and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrainwellError(
            f"{key} = true needs the '{module}' extra: pip install 'trainwell[{module}]' "
            f"(or set {key} = false)"
        ) from None


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 1e-3}``: the dotted keys that
    ``--set`` uses, for trackers whose parameters are flat (MLflow)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
