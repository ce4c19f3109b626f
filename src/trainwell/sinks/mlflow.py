"""MLflowSink: metrics and the resolved config into an MLflow run (optional extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainwell.sinks.base import flatten_config, import_extra


class MLflowSink:
    """Starts an MLflow run named after the run directory, logs the config as params
    (dotted keys, ``optim.lr``) and every write as metrics at ``step``.

    The tracking store is ``MLFLOW_TRACKING_URI`` when set, else ``./mlruns`` (what the
    ``log.mlflow`` docs promise, whatever MLflow's own default is in the installed version).
    """

    def __init__(self, run_dir: str | Path, config_dict: Mapping[str, Any]) -> None:
        self._mlflow = import_extra("mlflow", "log.mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            self._mlflow.set_tracking_uri(Path("mlruns").resolve().as_uri())
        self._run = self._mlflow.start_run(run_name=Path(run_dir).name)
        self._mlflow.log_params(flatten_config(config_dict))
        self._open = True

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=int(step))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._mlflow.end_run()
