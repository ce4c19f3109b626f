"""The ``[checkpoint]`` section: how often to save and how many checkpoints to keep."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainwell.section import Section


class CheckpointConfig(Section):
    """Checkpoint cadence and retention. The loop saves at the end of training whatever
    the cadence says (unless ``final`` is off)."""

    every_steps: int = Field(500, ge=0)
    """Save every this many applied steps; 0 = off. 500 bounds what a crash or a rollback loses to 500 updates and gives the default 1000-step run a mid-run rollback target, while a save (about a second per GB of state) stays a negligible share of the run."""
    every_minutes: float = Field(15.0, ge=0.0)
    """Also save when this many minutes of wall time passed since the last save; 0 = off. Bounds the work a crash loses on slow runs whatever the step time; 15 minutes is Levanter's default for its time-based checkpoints."""
    keep_last: int = Field(3, ge=1)
    """Keep the newest this many checkpoints. Three survive one damaged save and one rollback with a checkpoint to spare."""
    keep_healthy: int = Field(2, ge=0)
    """Also keep the newest this many checkpoints marked healthy (the newest healthy one is never deleted, even at 0). Two, so that a rollback still has a target if the newest healthy one turns out bad."""
    final: bool = True
    """Save when the run ends (after the final evaluation), whatever the cadence: what `trainwell resume`, evaluation and export start from. Off only for throwaway runs whose files are read and not continued (trainwell diagnose's short probe runs turn it off: a model's worth of disk for nothing)."""
    async_save: bool = False
    """Snapshot the state to CPU memory and write it in a background thread, so training waits only for the copy. Off by default: a synchronous save is simpler and its failure surfaces at the step that saved; turn it on when saves take long next to steps (see benchmarks/checkpoint_async.py)."""
    on_error: Literal["continue", "stop"] = "continue"
    """What the loop does when a save fails (disk full, permission denied...): earlier checkpoints are always kept intact and the failure is logged; 'continue' trains on and retries at the next save, 'stop' halts. 'continue' by default: a full disk should not throw away the progress a run can still make, and space freed later lets the next save succeed."""
