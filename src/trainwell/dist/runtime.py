"""What the loop calls in a multi-process run, in one namespace (imported only then)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainwell.dist.outputs import gather_step_output
from trainwell.dist.rank0 import SilentProgress, describe, shared_run_dir
from trainwell.dist.sharded import ShardedWeights

__all__ = ["SilentProgress", "describe", "gather_step_output", "shared_run_dir", "sharded"]


def sharded(st: Any, run_dir: Path) -> ShardedWeights | None:
    """The DCP checkpoint writer of an FSDP2 run (None for DDP: rank 0 saves full state);
    the run's EMA, sharded like the model, goes into the same checkpoints."""
    if st.dist is None or st.dist.parallel != "fsdp":
        return None
    return ShardedWeights(st.model, st.optimizer, Path(run_dir) / "checkpoints", ema=st.ema)
