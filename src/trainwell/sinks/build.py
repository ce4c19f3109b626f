"""build_sinks: the sinks that ``[log]`` asks for, under the run directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainwell.sinks.base import Sink
from trainwell.sinks.config import LogConfig
from trainwell.sinks.jsonl import JsonlSink

METRICS_FILE = "metrics.jsonl"
"""The JSONL metrics file in every run directory (always written: reports read it)."""
TENSORBOARD_DIR = "tensorboard"
"""Sub-directory of the run directory for TensorBoard event files."""


def build_sinks(
    cfg: LogConfig, run_dir: str | Path, config: Mapping[str, Any] | None = None
) -> list[Sink]:
    """JSONL always; TensorBoard, MLflow and W&B when ``log.tensorboard``, ``log.mlflow``,
    ``log.wandb`` say so. ``config`` is the
    whole resolved config as a dict (``RunConfig.to_dict()``), logged by MLflow and W&B.

    Call on the writing process only (rank 0). If one sink cannot be built (a missing
    extra), the ones already open are closed before the error propagates.
    """
    run_dir = Path(run_dir)
    config = dict(config or {})
    sinks: list[Sink] = []
    try:
        sinks.append(JsonlSink(run_dir / METRICS_FILE))
        if cfg.tensorboard:
            from trainwell.sinks.tensorboard import TensorBoardSink

            sinks.append(TensorBoardSink(run_dir / TENSORBOARD_DIR))
        if cfg.mlflow:
            from trainwell.sinks.mlflow import MLflowSink

            sinks.append(MLflowSink(run_dir, config))
        if cfg.wandb:
            from trainwell.sinks.wandb import WandbSink

            sinks.append(WandbSink(run_dir, config))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
