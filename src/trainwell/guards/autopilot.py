"""Autopilot: the guards, the rollback policy, the health tracker, the quarantine list and
the logbook behind one decision point of the loop.

How the loop uses it (only the loop and its interventions change training state)::

    verdict = autopilot.decide(record)          # after backward, before optimizer.step
    ...apply or skip the update...
    autopilot.after(record, verdict)            # learn (applied steps only), count, log
    interventions.act(verdict, ...)             # quarantine / rollback / stop (train/interventions.py)
    at a checkpoint: healthy, evidence = autopilot.checkpoint_health(step)

Cost: plain Python floats, no tensor op, no host sync (the step made the one sync that
produced the record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from trainwell.guards.base import APPLY, Action, Guard, Verdict, worst
from trainwell.guards.config import GuardsConfig
from trainwell.guards.family import GuardContext, build_guards
from trainwell.guards.health import HealthTracker
from trainwell.guards.logbook import Logbook, record_fields
from trainwell.guards.nonfinite import FP16_OVERFLOW
from trainwell.guards.quarantine import QuarantineList, find_bad_samples
from trainwell.guards.rollback import RollbackPolicy
from trainwell.train.record import StepRecord


class Autopilot:
    """Composes the guards from a GuardsConfig. ``run_dir`` None: no logbook (ranks > 0)."""

    def __init__(
        self,
        cfg: GuardsConfig | None = None,
        run_dir: str | Path | None = None,
        input_prior: tuple[float, float] | None = None,
    ) -> None:
        """``input_prior``: the training data's log input scale (guards/prior.py), which arms
        the input guard from the first step."""
        self.cfg = cfg = cfg or GuardsConfig()
        # Disabled: only the non-finite guard, which then stops (a NaN update is never applied)
        self.guards: list[Guard] = build_guards(cfg, GuardContext(input_prior=input_prior))
        self.rollback = RollbackPolicy(
            max_skips=cfg.max_skips,
            skip_window=cfg.skip_window,
            divergence_factor=cfg.divergence_factor,
            divergence_steps=cfg.divergence_steps,
            divergence_floor=cfg.divergence_floor,
            min_loss_scale=cfg.min_loss_scale,
            # rollback off: a trigger stops the run rather than skipping forever
            max_rollbacks=cfg.max_rollbacks if cfg.rollback else 0,
            recovery_steps=cfg.recovery_steps,
        )
        self.health = HealthTracker(cfg.health_window, min_loss_scale=cfg.min_loss_scale)
        self.quarantine = QuarantineList()
        self.logbook = Logbook(run_dir) if run_dir is not None else None
        self.skips = 0
        self.skips_by_reason: dict[str, int] = {}
        self.fp16_overflows = 0

    def guard(self, name: str) -> Guard | None:
        """The guard of that name, if this run uses it."""
        return next((g for g in self.guards if g.name == name), None)

    # ------------------------------------------------------------- every step

    def decide(self, record: StepRecord) -> Verdict:
        """The verdict for this step: STOP > ROLLBACK > SKIP > APPLY. Pure. The guards in
        order, the first objection wins; then the rollback policy may escalate it."""
        verdict = APPLY
        for guard in self.guards:
            verdict = guard.check(record)
            if verdict.action is not Action.APPLY:
                break
        if not self.cfg.enabled:
            return verdict
        escalate = self.rollback.check(record, skipping=verdict.action is Action.SKIP)
        return worst(verdict, escalate)

    def after(self, record: StepRecord, verdict: Verdict) -> None:
        """Learn from the step and write the logbook. Windows advance only if the update
        was applied (verdict APPLY and ``record.applied``: the fp16 scaler may have skipped it)."""
        self._after(record, verdict)

    def _after(self, record: StepRecord, verdict: Verdict) -> None:
        act = verdict.action
        if act is Action.APPLY and record.applied:
            for guard in self.guards:
                guard.update(record)
        elif act is Action.APPLY and record.reason == FP16_OVERFLOW:
            self.fp16_overflows += 1
            # information, not an intervention: the grad scaler handles it by design
            self._write(
                "fp16_overflow",
                f"fp16 gradient overflow at step {record.step} (iteration {record.iteration}): the grad "
                f"scaler dropped this update and lowers the loss scale from {record.loss_scale:g}. "
                "Normal now and then; a collapsing scale triggers a rollback.",
                **record_fields(record),
            )
        rollback = self.rollback
        target, best_before = rollback.target, rollback.best
        recovered = self.cfg.enabled and rollback.update(record, verdict)
        self.health.update(record, intervened=act is not Action.APPLY)
        if act is Action.APPLY:
            if recovered:
                self._recovered(record, target, best_before)
            return
        if act is Action.SKIP:
            self.skips += 1
            self.skips_by_reason[verdict.reason] = self.skips_by_reason.get(verdict.reason, 0) + 1
        kind = {Action.SKIP: "skip", Action.ROLLBACK: "rollback", Action.STOP: "stop"}[act]
        self._write(
            kind,
            verdict.message,
            **record_fields(record),
            guard=verdict.guard,
            reason=verdict.reason,
            **{k: verdict.evidence[k] for k in ("z_loss", "z_grad") if k in verdict.evidence},
            evidence=verdict.evidence,
        )
        if recovered:
            self._recovered(record, target, best_before)

    def _recovered(self, record: StepRecord, target: float | None, best_before: float | None) -> None:
        ema = self.rollback.ema if self.rollback.ema is not None else float("nan")
        why = (
            f"the smoothed loss {ema:.4g} is back below {target:.4g}, its level before the incident"
            if target is not None and ema <= target
            else f"{self.cfg.recovery_steps} steps in a row without intervention"
        )
        self._write(
            "recovered",
            f"Recovered at step {record.step}: {why}.",
            step=record.step,
            iteration=record.iteration,
            loss_ema=ema,
            best_loss_ema=best_before,
        )

    # ------------------------------------------------------------- occasional

    def checkpoint_health(self, step: int) -> tuple[bool, dict[str, Any]]:
        """Whether a checkpoint taken now may serve as a rollback target, and why (not)."""
        healthy, evidence = self.health.healthy()
        return healthy, {"step": step, **evidence}

    def rollback_multipliers(self, lr_mult: float, clip_mult: float) -> tuple[float, float]:
        """(lr, clip) multipliers after one more rollback: the LR x lr_factor each time;
        the clipping threshold lowered once to clip_factor (OPT: 1.0 -> 0.3)."""
        return lr_mult * self.cfg.lr_factor, min(clip_mult, self.cfg.clip_factor)

    def on_rollback(
        self,
        from_step: int,
        to_step: int,
        lr_mult_before: float,
        lr_mult_after: float,
        clip_mult_before: float,
        clip_mult_after: float,
        *,
        iteration: int | None = None,
        data_skip: int | None = None,
        **extra: Any,
    ) -> None:
        """The loop restored a healthy checkpoint: log what was done."""
        self.health.note_intervention()  # the next healthy checkpoint needs a clean window
        data = (
            f"; data resumes {data_skip} batch(es) past iteration {iteration}"
            if data_skip is not None and iteration is not None
            else ""
        )
        # step 0 is the state before the first update, which the loop keeps (checkpointing.py)
        target = f"the healthy checkpoint at step {to_step}" if to_step else "the initial state (step 0)"
        self._write(
            "restart",
            f"Rolled back from step {from_step} to {target}: "
            f"lr x{lr_mult_before:g} -> x{lr_mult_after:g}, clip x{clip_mult_before:g} -> "
            f"x{clip_mult_after:g}{data}.",
            step=to_step,
            iteration=iteration,
            from_step=from_step,
            to_step=to_step,
            lr_before=lr_mult_before,
            lr_after=lr_mult_after,
            clip_before=clip_mult_before,
            clip_after=clip_mult_after,
            data_skip=data_skip,
            rollbacks=self.rollback.rollbacks,
            **extra,
        )

    def input_outliers(self, per_sample_rms: Tensor) -> Tensor | None:
        """(B,) bool: the samples whose own input RMS the input guard calls an outlier
        (None when this run has no input guard)."""
        inputs = self.guard("inputs")
        return inputs.outliers(per_sample_rms) if inputs is not None else None

    def bad_samples(
        self, per_sample_loss: Tensor, idx: Tensor, nonfinite_inputs: Tensor | None = None
    ) -> list[int]:
        """The samples of a refused batch to quarantine ([] when quarantine is off)."""
        if not (self.cfg.enabled and self.cfg.quarantine):
            return []
        return find_bad_samples(per_sample_loss, idx, nonfinite_inputs, z=self.cfg.quarantine_z)

    def on_quarantine(
        self,
        ids: list[int],
        evidence: dict[str, Any] | None = None,
        *,
        step: int,
        iteration: int | None = None,
        reason: str = "extreme or non-finite per-sample loss",
    ) -> list[int]:
        """Quarantine ``ids`` and log it; returns the ids that are new to the list."""
        new = self.quarantine.add(ids, reason, step)
        if new:
            shown = ", ".join(str(i) for i in new[:20]) + (" ..." if len(new) > 20 else "")
            self._write(
                "quarantine",
                f"{len(new)} sample(s) quarantined at step {step} ({reason}): {shown}.",
                step=step,
                iteration=iteration,
                sample_ids=new,
                reason=reason,
                evidence=evidence or {},
            )
        return new

    def log(self, kind: str, message: str, **fields: Any) -> dict[str, Any] | None:
        """Any other event: 'resume', 'multiplier', 'summary' (what happened in the end)..."""
        return self._write(kind, message, **fields)

    def metrics(self) -> dict[str, float]:
        return {
            "guard/skips": self.skips,
            "guard/rollbacks": self.rollback.rollbacks,
            "guard/quarantined": len(self.quarantine),
            "guard/fp16_overflows": self.fp16_overflows,
        }

    # ------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            **{g.name: g.state_dict() for g in self.guards},
            "health": self.health.state_dict(),
            "rollback": self.rollback.state_dict(),
            "quarantine": self.quarantine.state_dict(),
            "counters": {
                "skips": self.skips,
                "skips_by_reason": dict(self.skips_by_reason),
                "fp16_overflows": self.fp16_overflows,
            },
        }

    def load_state_dict(self, state: dict[str, Any], rollback: bool = False) -> None:
        """Resume (``rollback=False``): restore everything. Rollback (``True``): restore
        the guards' windows and the health tracker from the checkpoint, keep the run's
        history (rollback count, quarantine list, counters: restoring the rollback count
        would let a run roll back forever); the divergence rule's baseline becomes the
        restored state's (``RollbackPolicy.rebase``)."""
        for guard in self.guards:
            if guard.name in state:  # a guard added to guards.use since: starts empty
                guard.load_state_dict(state[guard.name])
        self.health.load_state_dict(state["health"])
        if rollback:
            self.rollback.rebase(state["rollback"])
            return
        self.rollback.load_state_dict(state["rollback"])
        self.quarantine.load_state_dict(state["quarantine"])
        c = state["counters"]
        self.skips = c["skips"]
        self.skips_by_reason = dict(c["skips_by_reason"])
        self.fp16_overflows = c["fp16_overflows"]

    def _write(self, kind: str, message: str, **fields: Any) -> dict[str, Any] | None:
        if self.logbook is None:
            return None
        return self.logbook.write({"kind": kind, **fields, "message": message})
