"""WandbSink: metrics and the resolved config into a Weights & Biases run (optional extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainwell.sinks.base import import_extra


class WandbSink:
    """A W&B run in offline mode, its files under ``RUN_DIR/wandb/`` (sync later with
    ``wandb sync``): training must not depend on the network. Setting ``WANDB_MODE``
    (e.g. ``online``) overrides; ``WANDB_PROJECT`` names the project (default trainwell).

    W&B drops writes whose step is lower than one already logged: after a rollback the
    replayed steps appear only in the JSONL and TensorBoard logs.
    """

    def __init__(self, run_dir: str | Path, config_dict: Mapping[str, Any]) -> None:
        wandb = import_extra("wandb", "log.wandb")
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "trainwell"),
            name=run_dir.name,
            dir=str(run_dir),
            config=dict(config_dict),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )
        self._open = True

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self._run.log({k: float(v) for k, v in metrics.items()}, step=int(step))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._run.finish()
