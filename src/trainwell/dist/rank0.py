"""Rank 0 writes the run directory; the other ranks stay quiet and only share its path."""

from __future__ import annotations

from pathlib import Path

from trainwell.dist.context import DistContext
from trainwell.sinks import ConsoleProgress
from trainwell.train.rundir import make_run_dir


def shared_run_dir(ctx: DistContext, run_dir: str | Path | None, task_name: str) -> Path:
    """The run directory every rank uses: rank 0 picks it (a fresh timestamped one when
    ``run_dir`` is None) and tells the others."""
    path = make_run_dir(run_dir, task_name) if ctx.main else None
    return Path(ctx.broadcast(str(path) if path is not None else None))


class SilentProgress(ConsoleProgress):
    """The console of ranks > 0: no bar and no lines (rank 0 prints them once)."""

    def __init__(self, total_steps: int, unit: str = "samples") -> None:
        super().__init__(total_steps, enabled=False, unit=unit)

    def log(self, message: str) -> None:
        pass


def describe(ctx: DistContext) -> dict[str, object]:
    """For env.json: how the run was spread."""
    out: dict[str, object] = {"parallel": ctx.parallel, "world_size": ctx.processes, "backend": ctx.backend,
                              "restart": ctx.restart}
    if ctx.tp > 1:
        out.update(tensor_parallel=ctx.tp, data_parallel=ctx.world)
    return out
