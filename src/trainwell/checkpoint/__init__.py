"""Checkpoints: atomic, checksummed, resumable; healthy kept apart from latest.

``CheckpointStore`` writes ``RUN_DIR/checkpoints/step-XXXXXXXX/`` directories that appear
whole or not at all, verifies every sha256 before loading, unpickles only tensors and plain
data, and deletes old checkpoints by rules that never leave a run without a healthy one.
``AsyncSaver`` moves the write to a background thread; ``export_run`` turns the newest valid
checkpoint into a safetensors file. The store raises CheckpointError on a failed save; the
loop reads ``CheckpointConfig.on_error`` to decide whether to go on.
"""

from __future__ import annotations

from trainwell.checkpoint.async_save import AsyncSaver
from trainwell.checkpoint.config import CheckpointConfig
from trainwell.checkpoint.export import export_run, export_weights, load_weights, newest_weights
from trainwell.checkpoint.store import CheckpointInfo, CheckpointStore, load_checkpoint_dir

__all__ = [
    "AsyncSaver",
    "CheckpointConfig",
    "CheckpointInfo",
    "CheckpointStore",
    "export_run",
    "export_weights",
    "load_checkpoint_dir",
    "load_weights",
    "newest_weights",
]
