"""The autopilot's interventions, in one place: quarantine, rollback and stop, with the
training-state changes they make and their logbook entries.

The autopilot decides (guards/autopilot.py); the checkpointer stores and loads
(train/checkpointing.py); this module carries a refused update's consequences out::

    verdict = pilot.decide(record)
    ...apply or skip...
    interventions.act(verdict, record, out)   # SKIP: quarantine; ROLLBACK: restore; STOP: raise
"""

from __future__ import annotations

from typing import Any

import torch

from trainwell.errors import TrainingHalted
from trainwell.guards.autopilot import Autopilot
from trainwell.guards.base import Action, Verdict
from trainwell.guards.config import GuardsConfig
from trainwell.tasks.base import Task
from trainwell.train.checkpointing import Checkpointer
from trainwell.train.record import StepRecord
from trainwell.train.state import TrainState
from trainwell.train.step import StepOutput

NO_TARGET = ("A rollback was due, but there is no healthy checkpoint to roll back to: save more often "
             "(checkpoint.every_steps) or lower optim.lr.")


class Interventions:
    def __init__(self, cfg: GuardsConfig, st: TrainState, pilot: Autopilot, ckpt: Checkpointer, log: Any,
                 task: Task) -> None:
        """``log``: a callable for one console line (the progress bar's ``log``); ``task``:
        scores a refused update's samples again when its loss reported no per-sample losses."""
        self.cfg, self.st, self.pilot, self.ckpt, self.log, self.task = cfg, st, pilot, ckpt, log, task
        self._unnamed_said = False
        self.rollback_before: int | None = None
        """A rollback goes to a healthy checkpoint older than this: the step where the
        incident began, then older than the last target while the run has not recovered."""

    def act(self, verdict: Verdict, record: StepRecord, out: StepOutput) -> None:
        """Carry out a refused update's verdict (nothing for APPLY)."""
        if verdict.action is Action.SKIP:
            self.quarantine(record, out, verdict.reason)
        elif verdict.action is Action.ROLLBACK:
            self.rollback(verdict)
        elif verdict.action is Action.STOP:
            self.ckpt.save(self.st, self.pilot, healthy=False)
            raise TrainingHalted(verdict.message or verdict.reason)

    def saved(self, healthy: bool) -> None:
        """A checkpoint was saved: a healthy one is the next incident's rollback target."""
        if healthy:
            self.rollback_before = None

    # ------------------------------------------------------------ quarantine

    def quarantine(self, record: StepRecord, out: StepOutput, reason: str) -> None:
        """A refused batch: find the samples responsible and never serve them again. An
        input outlier blames the samples whose own input is an outlier; a non-finite update
        blames only samples whose own loss is non-finite (a blow-up with finite per-sample
        losses is numerical, not the data's fault); a spike blames the extreme per-sample
        losses (one extra look at this batch's losses, no extra forward)."""
        if not (self.cfg.enabled and self.cfg.quarantine):
            return
        if not out.per_sample and not reason.startswith("input_"):
            out.per_sample = self._sample_losses(out)
        if self.st.dist is not None:  # every rank judges every rank's samples: the same quarantine everywhere
            from trainwell.dist.outputs import gather_step_output

            out = gather_step_output(self.st.dist, out)
        why, bad = self._culprits(out, reason)
        new = bad and self.pilot.on_quarantine(bad, {"loss": record.loss}, step=self.st.step,
                                               iteration=self.st.iteration, reason=why)
        if new:
            self.st.loader.exclude(frozenset(self.pilot.quarantine.ids()))  # a no-op where ids are stream positions

    def _sample_losses(self, out: StepOutput) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(ids, each sample's loss) of the refused update's micro-batches, scored again by the
        task (the model is as it was: the update was not applied), or [] when it cannot tell
        its samples apart (said once on the console). One process only: scoring sample by
        sample runs forwards whose collectives (DDP's buffers, FSDP2's gathers) other ranks,
        holding other batch sizes, would not match."""
        scored = []
        if self.st.dist is None:
            with self.st.precision.autocast():
                for ids, batch in out.micro:
                    losses = self.task.sample_losses(self.st.model, batch)
                    if losses is None or losses.numel() != ids.numel():
                        scored = []
                        break
                    scored.append((ids, losses))
        if not scored and not self._unnamed_said:
            self._unnamed_said = True
            self.log("autopilot: the samples behind a refused update cannot be named (the task's loss gives "
                     "no per-sample losses): updates are skipped, no sample is quarantined")
        return scored

    def _culprits(self, out: StepOutput, reason: str) -> tuple[str, list[int]]:
        inputs = out.per_sample_input_rms() if reason.startswith("input_") else None
        if inputs is not None:
            ids, rms = inputs
            outliers = self.pilot.input_outliers(rms)
            return "input scale far outside the usual range", ids[outliers].tolist() if outliers is not None else []
        why = "extreme or non-finite per-sample loss"
        if not out.per_sample:
            return why, []
        ids = torch.cat([i for i, _ in out.per_sample])
        losses = torch.cat([loss.float().cpu() for _, loss in out.per_sample])
        if reason != "nonfinite":
            return why, self.pilot.bad_samples(losses, ids)
        finite = torch.isfinite(losses)
        # every loss non-finite: the model blew up, not the data (a bad sample leaves the
        # others finite); blaming the whole batch emptied the dataset at a too-high lr
        return why, ids[~finite].tolist() if finite.any() else []

    # ------------------------------------------------------------ rollback

    def rollback(self, verdict: Verdict) -> None:
        """Restore the newest healthy checkpoint older than the incident, with a lower LR and
        clipping (OPT's recipe). The data position stays where it is (then moves
        ``guards.data_skip`` batches on), so the batches that led here are not replayed."""
        st = self.st
        before = st.step if self.rollback_before is None else min(self.rollback_before, st.step)
        from_step, lr_before, clip_before = st.step, st.lr_mult, st.clip_mult
        target = self.ckpt.rollback_target(before)
        if target is None:
            self.ckpt.save(st, self.pilot, healthy=False)
            raise TrainingHalted(f"{verdict.message or verdict.reason} {NO_TARGET}")
        restored, parts = target
        loader_now, iteration, samples, targets = st.loader.state_dict(), st.iteration, st.samples_seen, st.targets_seen
        st.load_state_dict(parts)
        self.pilot.load_state_dict(parts["train"]["autopilot"], rollback=True)  # the guards' windows
        st.loader.load_state_dict(loader_now)  # the run's history moves on: data, counters
        st.iteration, st.samples_seen, st.targets_seen = iteration, samples, targets
        if self.cfg.data_skip:
            st.loader.skip(self.cfg.data_skip)
            st.iteration += self.cfg.data_skip
        st.lr_mult, st.clip_mult = self.pilot.rollback_multipliers(lr_before, clip_before)
        st.loader.exclude(frozenset(self.pilot.quarantine.ids()))
        self.pilot.on_rollback(from_step, restored, lr_before, st.lr_mult, clip_before, st.clip_mult,
                               iteration=st.iteration, data_skip=self.cfg.data_skip, reason=verdict.reason)
        self.log(f"autopilot: {verdict.reason} at step {from_step}; rolled back to step {restored}, "
                 f"lr x{st.lr_mult:g}, clip x{st.clip_mult:g}")
        self.rollback_before = restored
