"""trainwell: train neural networks well, and fly the run for you.

    import trainwell
    result = trainwell.fit(model, dataset, torch.nn.functional.cross_entropy,
                           config={"train": {"steps": 300}})

Names are imported on first use (PEP 562), so ``import trainwell`` stays fast and
importing one subpackage does not pull in the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "fit": "trainwell.api",
    "diagnose": "trainwell.diagnose",
    "lr_find": "trainwell.api",
    "train": "trainwell.train",
    "tune": "trainwell.tune",
    "FunctionTask": "trainwell.api",
    "RunConfig": "trainwell.config",
    "load_config": "trainwell.config",
    "RunResult": "trainwell.train.loop",
    "Task": "trainwell.tasks.base",
    "LossOutput": "trainwell.tasks.base",
    "TrainwellError": "trainwell.errors",
    "ConfigError": "trainwell.errors",
    "DataError": "trainwell.errors",
    "TaskError": "trainwell.errors",
    "CheckpointError": "trainwell.errors",
    "TrainingHalted": "trainwell.errors",
}

__all__ = [  # noqa: F822 (resolved lazily by __getattr__)
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FunctionTask",
    "LossOutput",
    "RunConfig",
    "RunResult",
    "Task",
    "TaskError",
    "TrainingHalted",
    "TrainwellError",
    "diagnose",
    "fit",
    "load_config",
    "lr_find",
    "train",
    "tune",
]

if TYPE_CHECKING:
    from trainwell.api import FunctionTask, fit, lr_find, train
    from trainwell.config import RunConfig, load_config
    from trainwell.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        TaskError,
        TrainingHalted,
        TrainwellError,
    )
    from trainwell.tasks.base import LossOutput, Task
    from trainwell.train.loop import RunResult
    from trainwell.tune import tune


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainwell' has no attribute {name!r}")
    if name in ("diagnose", "train"):  # the package is the callable (callable_package.py says why)
        return importlib.import_module(module)
    return getattr(importlib.import_module(module), name)
