"""Where metrics go: JSONL (always), TensorBoard, MLflow, W&B, and the console progress bar.

sinks = build_sinks(cfg.log, run_dir, cfg.to_dict())
for sink in sinks:
    sink.write(step, {"train/loss": 2.31, "train/lr": 3e-4})
"""

from __future__ import annotations

from trainwell.sinks.base import Sink
from trainwell.sinks.build import METRICS_FILE, TENSORBOARD_DIR, build_sinks
from trainwell.sinks.console import ConsoleProgress, progress_enabled
from trainwell.sinks.jsonl import JsonlSink, read_jsonl
from trainwell.sinks.memory import MemorySink
from trainwell.sinks.mlflow import MLflowSink
from trainwell.sinks.tensorboard import TensorBoardSink
from trainwell.sinks.wandb import WandbSink

__all__ = [
    "METRICS_FILE",
    "TENSORBOARD_DIR",
    "ConsoleProgress",
    "JsonlSink",
    "MLflowSink",
    "MemorySink",
    "Sink",
    "TensorBoardSink",
    "WandbSink",
    "build_sinks",
    "progress_enabled",
    "read_jsonl",
]
