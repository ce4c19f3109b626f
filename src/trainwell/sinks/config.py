"""The ``[log]`` section: where metrics go and how often."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainwell.section import Section


class LogConfig(Section):
    every: int = Field(10, ge=1)
    """Write train metrics every this many steps (per-step values at that step). Guards still see every step."""
    progress: Literal["auto", "on", "off"] = "auto"
    """Live progress bar: 'auto' shows it only when stdout is a terminal."""
    tensorboard: bool = True
    """Write TensorBoard event files under the run directory."""
    mlflow: bool = False
    """Also log to MLflow (needs the 'mlflow' extra; uses MLFLOW_TRACKING_URI or ./mlruns)."""
    wandb: bool = False
    """Also log to Weights & Biases in offline mode (needs the 'wandb' extra)."""
    peak_tflops: float = Field(0.0, ge=0.0)
    """Peak dense TFLOP/s of the device, for sys/mfu where trainwell's table has no entry (any CPU, an unlisted GPU); 0 = the table (NVIDIA datacenter GPUs). sys/model_tflops (achieved) is logged either way when the model's FLOPs are known."""
    sample_chars: int = Field(300, ge=0)
    """Language models: length of the text sample printed at the end (0 = none)."""
