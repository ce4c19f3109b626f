"""RollbackPolicy: when skipping no longer helps, go back to a healthy checkpoint.

OPT-175B (Zhang et al. 2022, section 2.5): "When the loss diverged, we found that lowering
the learning rate and restarting from an earlier checkpoint allowed for the job to recover",
and divergence went with "our dynamic loss scalar crashing to 0". The triggers here are the
three signs they watched by hand; after ``max_rollbacks`` rollbacks without recovery the
verdict is STOP with a diagnosis instead of an endless loop.

All of this policy's state is run *history*: a rollback restores the guards' windows from
the checkpoint but must keep these counters, or a run would roll back forever.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from trainwell.guards.base import APPLY, Action, Verdict, finite
from trainwell.train.record import StepRecord

_APPLY, _SKIP, _ROLLBACK = Action.APPLY, Action.SKIP, Action.ROLLBACK
"""Read once: ``Action.X`` goes through the Enum class (0.2 us each in Python 3.11)."""

STOP_HINTS = (
    "Try: a lower optim.lr or a longer schedule.warmup_steps; optim.betas=[0.9, 0.95]; "
    "a smaller clip.max_norm; precision='bf16' or 'fp32' instead of fp16; task.z_loss=1e-4 "
    "for language models; and check the data around the incidents in logbook.md."
)


class RollbackPolicy:
    """Triggers (each can be turned off with 0): ``max_skips`` guard skips within the last
    ``skip_window`` attempted steps; the smoothed loss above ``divergence_factor`` x its best
    value (and at least ``divergence_floor`` x the loss at initialisation above it, so that
    a model trained close to zero loss, whose smoothed loss can triple from 0.005 to 0.015
    on a few hard batches, is not 'diverging') for ``divergence_steps`` applied steps in a
    row; the fp16 loss scale below
    ``min_loss_scale``. Recovery = past the step where the last rollback was triggered
    with the smoothed loss back at its pre-rollback best, or ``recovery_steps`` applied
    steps in a row without any intervention. (A restored checkpoint starts near the best
    loss, so the level alone would count every restart as a recovery and never stop.)
    """

    name = "rollback"

    def __init__(
        self,
        max_skips: int = 5,
        skip_window: int = 100,
        divergence_factor: float = 1.5,
        divergence_steps: int = 20,
        min_loss_scale: float = 1.0,
        max_rollbacks: int = 3,
        recovery_steps: int = 500,
        ema_beta: float = 0.98,
        divergence_floor: float = 0.05,
    ) -> None:
        if divergence_factor <= 1.0:
            raise ValueError(f"guards.divergence_factor must be > 1, got {divergence_factor}")
        self.max_skips = max_skips
        self.skip_window = skip_window
        self.divergence_factor = divergence_factor
        self.divergence_steps = divergence_steps
        self.divergence_floor = divergence_floor
        self.loss_ref: float | None = None
        """The first applied finite loss: the problem's own scale (ln C for C classes)."""
        self.min_loss_scale = min_loss_scale
        self.max_rollbacks = max_rollbacks
        self.recovery_steps = recovery_steps
        # 0.98: an EMA over ~50 steps, smooth enough that batch noise never looks like a
        # divergence, quick enough to see one within a few hundred steps.
        self.ema_beta = ema_beta
        self.attempts = 0
        """Records seen (applied or not). Never goes back, unlike step/iteration after a rollback."""
        self.skip_at: deque[int] = deque()
        self.ema: float | None = None
        self.best: float | None = None
        self.above = 0
        self.rollbacks = 0
        self.since_recovery = 0
        self.target: float | None = None
        self.trigger_step = 0
        self.healthy_streak = 0

    # ------------------------------------------------------------- decide

    def _threshold(self) -> float:
        # baseline + (factor-1)|baseline| also works for losses that can be negative.
        assert self.best is not None
        floor = self.divergence_floor * abs(self.loss_ref or 0.0)
        return self.best + max((self.divergence_factor - 1.0) * abs(self.best), floor)

    def _next_ema(self, loss: float) -> float:
        return loss if self.ema is None else self.ema_beta * self.ema + (1 - self.ema_beta) * loss

    def check(self, record: StepRecord, skipping: bool = False) -> Verdict:
        """Pure. ``skipping``: the guards already decided to SKIP this step."""
        trigger: tuple[str, dict[str, float | int | str], str] | None = None
        if self.min_loss_scale > 0 and record.loss_scale < self.min_loss_scale:
            trigger = (
                "loss_scale",
                {"loss_scale": record.loss_scale, "min_loss_scale": self.min_loss_scale},
                f"the fp16 loss scale fell to {record.loss_scale:.3g} (< {self.min_loss_scale:g}): "
                "gradients overflow even unscaled, which went with divergence in OPT-175B",
            )
        elif skipping:
            recent = sum(1 for a in self.skip_at if a > self.attempts + 1 - self.skip_window) + 1
            if self.max_skips > 0 and recent >= self.max_skips:
                trigger = (
                    "skips",
                    {"skips": recent, "skip_window": self.skip_window},
                    f"{recent} updates skipped within the last {self.skip_window} steps: "
                    "skipping alone does not bring the run back",
                )
        elif (
            self.divergence_steps > 0
            and self.above + 1 >= self.divergence_steps  # first: false on every quiet step
            and record.applied
            and finite(record.loss)
            and self.best is not None
        ):
            ema = self._next_ema(record.loss)
            if ema > self._threshold():
                trigger = (
                    "divergence",
                    {
                        "loss_ema": ema,
                        "best_loss_ema": self.best,
                        "threshold": self._threshold(),
                        "steps_above": self.above + 1,
                    },
                    f"the smoothed loss {ema:.4g} stayed above {self.divergence_factor:g} x its "
                    f"best {self.best:.4g} for {self.above + 1} steps",
                )
        if trigger is None:
            return APPLY
        reason, evidence, what = trigger
        evidence = {**evidence, "rollbacks_since_recovery": self.since_recovery}
        where = f"at step {record.step} (iteration {record.iteration})"
        if self.since_recovery >= self.max_rollbacks:
            tried = (
                f"{self.since_recovery} rollback(s) with a lower learning rate did not recover "
                f"the run (guards.max_rollbacks={self.max_rollbacks})"
                if self.max_rollbacks > 0
                else "rollbacks are off (guards.rollback=false or guards.max_rollbacks=0)"
            )
            message = f"stopping {where}: {what}, and {tried}. {STOP_HINTS}"
            return Verdict(Action.STOP, reason, self.name, evidence, message)
        message = f"rollback {where}: {what}."
        return Verdict(Action.ROLLBACK, reason, self.name, evidence, message)

    # ------------------------------------------------------------- learn

    def update(self, record: StepRecord, verdict: Verdict) -> bool:
        """Called for every record with the final verdict. Returns True when this record
        completes a recovery (the run got back to where it was before its rollbacks)."""
        self.attempts += 1
        act = verdict.action
        if act is _ROLLBACK:
            self.rollbacks += 1
            self.since_recovery += 1
            if self.target is None:
                self.target = self.best  # the pre-divergence level to get back to
            self.trigger_step = record.step
            # Start afresh after the restore: the diverged EMA and skips say nothing about
            # the restored model (they would re-trigger at once).
            self.skip_at.clear()
            self.ema, self.above, self.healthy_streak = None, 0, 0
            return False
        if act is _SKIP:
            self.skip_at.append(self.attempts)
            self.healthy_streak = 0
        while self.skip_at and self.skip_at[0] <= self.attempts - self.skip_window:
            self.skip_at.popleft()
        loss = record.loss
        if act is not _APPLY or not record.applied or not math.isfinite(loss):
            return False
        if self.loss_ref is None:
            self.loss_ref = loss
        ema = self.ema = self._next_ema(loss)
        self.best = ema if self.best is None or ema < self.best else self.best
        self.above = self.above + 1 if ema > self._threshold() else 0
        if self.since_recovery == 0:
            return False
        self.healthy_streak += 1
        back = (
            self.target is not None and self.ema <= self.target and record.step > self.trigger_step
        )
        if back or self.healthy_streak >= self.recovery_steps:
            self.since_recovery, self.target, self.healthy_streak = 0, None, 0
            return True
        return False

    def rebase(self, restored: dict[str, Any]) -> None:
        """After a restore: the divergence rule judges the restarted run against the restored
        state's own best smoothed loss, not against the best the run reached later. A restart
        from an early state sits above that later best for a while by design (from the
        state before the first update, at the initial loss: there the rule learns a new best,
        as at the start of a run) and would otherwise be taken for a divergence at once. The
        counters stay: they are what stops a run that keeps rolling back."""
        self.best = restored.get("best_loss_ema")

    # ------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "skip_at": list(self.skip_at),
            "loss_ema": self.ema,
            "best_loss_ema": self.best,
            "steps_above": self.above,
            "rollbacks": self.rollbacks,
            "rollbacks_since_recovery": self.since_recovery,
            "recovery_target": self.target,
            "trigger_step": self.trigger_step,
            "healthy_streak": self.healthy_streak,
            "loss_ref": self.loss_ref,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.attempts = state["attempts"]
        self.skip_at = deque(state["skip_at"])
        self.ema = state["loss_ema"]
        self.best = state["best_loss_ema"]
        self.above = state["steps_above"]
        self.rollbacks = state["rollbacks"]
        self.since_recovery = state["rollbacks_since_recovery"]
        self.target = state["recovery_target"]
        self.trigger_step = state["trigger_step"]
        self.healthy_streak = state["healthy_streak"]
        self.loss_ref = state.get("loss_ref")
