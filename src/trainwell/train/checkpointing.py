"""The loop's side of checkpoints: cadence, what goes in, health marks, loading.

The store (checkpoint/) knows nothing about training; this module decides when to save,
assembles the TrainState parts, marks each checkpoint healthy or not with the autopilot's
evidence, restores everything on resume, and finds and loads a rollback's target (what a
rollback restores and what it keeps is train/interventions.py's business). The state before
the first update is kept in host memory as the rollback target of last resort.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_map_only

from trainwell.checkpoint import AsyncSaver, CheckpointConfig, CheckpointInfo, CheckpointStore
from trainwell.errors import CheckpointError, ConfigError
from trainwell.guards.autopilot import Autopilot
from trainwell.sinks.base import flatten_config
from trainwell.train.state import TrainState

log = logging.getLogger(__name__)

RESUMABLE_CHANGES = ("log.", "checkpoint.", "train.device", "train.threads", "faults.", "dist.backend",
                     "dist.timeout_s")
"""Config keys that may differ between a checkpoint and the run that resumes it: they do
not change the numbers (or, for faults, are how tests inject them)."""


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


class Checkpointer:
    def __init__(
        self, cfg: CheckpointConfig, run_dir: Path, config: dict[str, Any], dist: Any = None, sharded: Any = None,
        runner: Any = None,
    ) -> None:
        """``config``: the run's config as data, stored with each checkpoint (resume checks
        it). ``dist``: the DistContext of a multi-process run (rank 0 writes, every rank
        reads the same checkpoint); ``sharded``: an FSDP2 run's ShardedWeights (every rank
        writes its shards of the model and optimizer through DCP); ``runner``: the
        instrument runner, whose state (initial weights, noise-scale averages) is saved too."""
        self.cfg = cfg
        self.store = CheckpointStore(run_dir / "checkpoints", cfg)
        self.dist, self.sharded = dist, sharded
        self.writer = dist is None or dist.main
        self.saver = AsyncSaver(self.store) if cfg.async_save and self.writer else None
        self.config = config
        self._last_time = time.monotonic()
        self._pending_mark: tuple[int, bool, dict[str, Any]] | None = None
        self.failures = 0
        self.last_healthy = False
        """Whether the last save was marked healthy."""
        self.runner = runner
        self.initial: dict[str, Any] | None = None
        """A host copy of the state before the first update (``keep_initial``), or None."""

    def due(self, step: int) -> bool:
        if self.cfg.every_steps and step % self.cfg.every_steps == 0:
            return True
        minutes = self.cfg.every_minutes
        time_up = bool(minutes) and time.monotonic() - self._last_time >= minutes * 60
        if not minutes or self.dist is None:
            return time_up
        return self.dist.agree_clock(time_up)  # clocks differ: rank 0's decides for all

    def save(self, st: TrainState, pilot: Autopilot, *, healthy: bool | None = None) -> str | None:
        """Save now. Returns None on success, or the failure message when on_error is
        'continue' (earlier checkpoints are intact); raises CheckpointError when 'stop'."""
        self._last_time = time.monotonic()
        if self.dist is not None:
            self.dist.check_replicas(st.model, st.step)  # never save replicas that disagree
            failure = self._save(st, pilot, healthy)
            return self.dist.broadcast(failure)  # every rank takes the same next decision
        return self._save(st, pilot, healthy)

    def _save(self, st: TrainState, pilot: Autopilot, healthy: bool | None) -> str | None:
        sharded = self.sharded.save(st.step) if self.sharded is not None else None  # every rank
        if healthy is None:
            healthy, evidence = pilot.checkpoint_health(st.step)
        else:
            evidence = {"step": st.step, "note": "marked by the loop"}
        self.last_healthy = healthy
        if not self.writer:
            return None
        parts = st.state_dict(weights=sharded is None)
        parts["train"]["autopilot"] = pilot.state_dict()
        parts["train"]["config"] = self.config
        if self.runner is not None:
            parts["train"]["instruments"] = self.runner.state_dict()
        meta = {
            "step": st.step,
            "iteration": st.iteration,
            "config_digest": config_digest(self.config),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if sharded is not None:
            meta["sharded"] = sharded
        try:
            if self.saver is not None:
                self.saver.wait()  # one save in flight; surfaces a failed background write
                self._apply_pending_mark()
                self.saver.save(st.step, parts, meta)
                self._pending_mark = (st.step, healthy, evidence)
            else:
                self.store.save(st.step, parts, meta)
                self.store.mark_healthy(st.step, healthy, evidence)
        except CheckpointError as e:
            self.failures += 1
            self._pending_mark = None
            if self.cfg.on_error == "stop":
                raise
            log.warning("%s", e)
            return str(e)
        if self.sharded is not None:  # shards whose store checkpoint retention removed
            self.sharded.prune({i.step for i in self.store.list()} | {st.step})
        return None

    def close(self) -> None:
        if self.saver is not None:
            try:
                self.saver.wait()
                self._apply_pending_mark()
            finally:
                self.saver.close()

    def _apply_pending_mark(self) -> None:
        if self._pending_mark is not None:
            step, healthy, evidence = self._pending_mark
            self._pending_mark = None
            self.store.mark_healthy(step, healthy, evidence)

    def keep_initial(self, st: TrainState, pilot: Autopilot) -> None:
        """Keep the state before the first update as a rollback target of last resort: bad
        data does not wait for the first checkpoint (a user's Dataset with three samples
        x1e4 diverged at step 56, 444 steps before the first save, and the run halted with
        nothing to roll back to).

        In host memory rather than on disk: no file appears and no retention rule changes,
        a run with checkpoints off keeps it too, and it costs one host copy of the weights
        (and the EMA): the optimizer holds no state before its first step. Not under FSDP2
        (``sharded``): the weights are shards that only the sharded store saves; such a run
        rolls back to checkpoints only, as before."""
        if self.sharded is not None:
            return
        parts = st.state_dict()
        parts["train"]["autopilot"] = pilot.state_dict()
        self.initial = _host_copy(parts)

    # ------------------------------------------------------------ restoring

    def resume(self, st: TrainState, pilot: Autopilot) -> tuple[CheckpointInfo | None, list[str]]:
        """Restore everything from the newest valid checkpoint (None if there is none).
        Damaged or half-written newer checkpoints are reported and skipped."""
        info, skipped = self.store.latest_valid()
        info = self._agree(info)
        if info is None:
            return None, skipped
        parts = self.store.load(info)
        self._check_config(parts["train"].get("config", {}), info)
        st.load_state_dict(parts)
        self._load_sharded(info)
        pilot.load_state_dict(parts["train"]["autopilot"])
        if self.runner is not None and "instruments" in parts["train"]:
            self.runner.load_state_dict(parts["train"]["instruments"])
        return info, skipped

    def rollback_target(self, before: int) -> tuple[int, dict[str, Any]] | None:
        """The newest healthy checkpoint older than step ``before``, loaded: (its step, its
        parts), sharded weights loaded in place; else the initial state (``keep_initial``)
        when ``before`` > 0; None when there is no target. Checkpoints from ``before`` on are
        marked unhealthy first: they may hold the update that started the trouble (OPT
        picked restart points well before a divergence)."""
        if self.dist is not None and self.saver is not None:
            self.saver.wait()  # other ranks are about to read the store: no save in flight
            self._apply_pending_mark()
        if self.writer:
            for info in self.store.list():
                if info.valid and info.step >= before and info.healthy is not False:
                    self.store.mark_healthy(info.step, False, {"note": f"at or after step {before}, where an incident began"})
        if self.dist is not None:
            self.dist.barrier()  # the marks are written before any rank chooses
        target = self._agree(self.store.latest_healthy())
        if target is not None and target.step < before:
            parts = self.store.load(target)
            self._load_sharded(target)
            return target.step, parts
        if self.initial is None or before <= 0:
            return None
        # every rank kept the same initial state; a copy of it: loading may alias its
        # tensors, and a later rollback may need it again
        return 0, _host_copy(self.initial)

    def _agree(self, info: CheckpointInfo | None) -> CheckpointInfo | None:
        """Rank 0's choice of checkpoint, on every rank (each rank reads it itself)."""
        if self.dist is None:
            return info
        step = self.dist.broadcast(info.step if info is not None else None)
        if step is None:
            return None
        if info is not None and info.step == step:
            return info
        return self.store.inspect(self.store.path_for(step), deep=True)

    def _load_sharded(self, info: CheckpointInfo) -> None:
        where = info.meta.get("sharded")
        if where is None:
            return
        if self.sharded is None:
            raise CheckpointError(f"{info.path} holds sharded (FSDP2) weights; resume it with "
                                  "dist.parallel = 'fsdp' under torchrun, or consolidate it first "
                                  "(docs/distributed.md)")
        self.sharded.load(where)

    def _check_config(self, saved: dict[str, Any], info: CheckpointInfo) -> None:
        now, then = flatten_config(self.config), flatten_config(saved)
        # a key the saved config lacks is a setting added to trainwell since: at its default
        # (which keeps the earlier behaviour) it changes nothing
        added = {k for k in set(now) - set(then) if now[k] == _defaults().get(k)}
        changed = sorted(
            k for k in set(now) | set(then)
            if now.get(k) != then.get(k) and not k.startswith(RESUMABLE_CHANGES) and k not in added
        )
        if changed:
            shown = ", ".join(f"{k} ({then.get(k)!r} -> {now.get(k)!r})" for k in changed[:8])
            raise ConfigError(
                f"cannot resume from {info.path}: the config changed since it was saved: {shown}. "
                "Resume with the run's own config.toml, or start a new run"
            )


@functools.cache
def _defaults() -> dict[str, Any]:
    """Every setting's default, by dotted key."""
    from trainwell.config import RunConfig

    return flatten_config(RunConfig().to_dict())


def _host_copy(parts: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of checkpoint parts with every tensor copied to host memory."""
    return tree_map_only(torch.Tensor, lambda t: t.detach().to("cpu", copy=True), parts)


def truncate_metrics(path: Path, step: int) -> int:
    """Drop rows logged after ``step`` (a resumed run logs them again, identically).
    Returns how many rows were dropped."""
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1  # a line cut by the crash
            continue
        if row.get("step", 0) <= step:
            keep.append(line)
        else:
            dropped += 1
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in keep))
    os.replace(tmp, path)
    return dropped


def no_checkpoint_yet(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds no checkpoint at all (the run was stopped before its first):
    resuming it starts again from step 0, and the loop drops the rows it had logged. Damaged
    checkpoints are not 'none': resuming reports them."""
    from trainwell.checkpoint import CheckpointStore

    info, skipped = CheckpointStore(run_dir / "checkpoints").latest_valid()
    return info is None and not skipped
