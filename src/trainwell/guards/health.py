"""HealthTracker: is a checkpoint taken now a good place to roll back to?

OPT-175B (section 2.5) picked "restart points for which our dynamic loss scalar was still
in a 'healthy' state (>= 1.0), and after which our activation norms would trend downward
instead of growing unboundedly". A checkpoint is healthy here when all four hold:

1. no guard intervened in the last ``window`` attempted steps;
2. the smoothed loss is not rising (now vs ``window`` applied steps ago, within ``rise_tol``);
3. the fp16 loss scale is >= ``min_loss_scale`` (always true without fp16: the scale is 1);
4. the final layer's activation norm is not growing: the means of the four quarters of the
   window are not strictly increasing with a total rise above ``act_growth_tol``
   (``record.final_act_norm`` = 0 means untracked, and the test is skipped).

Keep "healthy" apart from "latest" (pocket-tts #262: a NaN checkpoint rotated the healthy
ones away and auto-resume reloaded NaN).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from trainwell.train.record import StepRecord


class HealthTracker:
    name = "health"

    def __init__(
        self,
        window: int = 100,
        rise_tol: float = 0.02,
        min_loss_scale: float = 1.0,
        act_growth_tol: float = 0.1,
        ema_beta: float = 0.98,
    ) -> None:
        if window < 4:
            raise ValueError(f"guards.health_window must be >= 4, got {window}")
        self.window = window
        # 2%: about 3x the noise of the difference of two EMA(0.98) values of a loss with
        # 5% batch noise, so a plateau does not read as 'rising'.
        self.rise_tol = rise_tol
        self.min_loss_scale = min_loss_scale
        # 10%: activation norms wander by a few percent; a steady climb of more over one
        # window is the unbounded growth OPT saw before divergences.
        self.act_growth_tol = act_growth_tol
        self.ema_beta = ema_beta
        self.ema: float | None = None
        self.ema_history: deque[float] = deque(maxlen=window + 1)
        self.act_history: deque[float] = deque(maxlen=window)
        self.since_intervention: int | None = None
        """Attempted steps since the last intervention (None: never intervened)."""
        self.loss_scale = 1.0

    def update(self, record: StepRecord, intervened: bool = False) -> None:
        """Called for every record. The loss and activation windows advance only on
        applied, finite steps; the intervention clock and the loss scale on every step."""
        if intervened:
            self.since_intervention = 0
        elif self.since_intervention is not None:
            self.since_intervention += 1
        self.loss_scale = record.loss_scale
        if intervened or not record.applied or not record.finite:
            return
        b = self.ema_beta
        self.ema = record.loss if self.ema is None else b * self.ema + (1 - b) * record.loss
        self.ema_history.append(self.ema)
        act = record.final_act_norm
        if act > 0 and act != math.inf:  # NaN fails the first test
            self.act_history.append(act)

    def note_intervention(self) -> None:
        """A rollback (or any out-of-band intervention) resets the clock of condition 1."""
        self.since_intervention = 0

    def healthy(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, evidence); evidence names each failed condition under 'vetoes'."""
        vetoes: list[str] = []
        ev: dict[str, Any] = {"loss_scale": self.loss_scale}
        if self.since_intervention is not None:
            ev["steps_since_intervention"] = self.since_intervention
            if self.since_intervention < self.window:
                vetoes.append(
                    f"a guard intervened {self.since_intervention} steps ago (< {self.window})"
                )
        if len(self.ema_history) >= 2:
            now, then = self.ema_history[-1], self.ema_history[0]
            ev["loss_ema"], ev["loss_ema_before"] = now, then
            if now > then + self.rise_tol * abs(then):
                vetoes.append(f"the smoothed loss is rising ({then:.4g} -> {now:.4g})")
        if self.loss_scale < self.min_loss_scale:
            vetoes.append(
                f"the fp16 loss scale {self.loss_scale:.3g} is below {self.min_loss_scale:g}"
            )
        acts = list(self.act_history)
        if len(acts) >= 4:
            q = len(acts) // 4
            means = [sum(acts[i * q : (i + 1) * q]) / q for i in range(4)]
            ev["act_norm_first_quarter"], ev["act_norm_last_quarter"] = means[0], means[-1]
            rising = all(a < b for a, b in zip(means, means[1:], strict=False))
            if rising and means[-1] > means[0] * (1 + self.act_growth_tol):
                vetoes.append(
                    f"the final-layer activation norm keeps growing ({means[0]:.4g} -> {means[-1]:.4g})"
                )
        ev["vetoes"] = "; ".join(vetoes)
        return not vetoes, ev

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_ema": self.ema,
            "loss_ema_history": list(self.ema_history),
            "act_norm_window": list(self.act_history),
            "steps_since_intervention": self.since_intervention,
            "loss_scale": self.loss_scale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = state["loss_ema"]
        self.ema_history = deque(state["loss_ema_history"], maxlen=self.window + 1)
        self.act_history = deque(state["act_norm_window"], maxlen=self.window)
        self.since_intervention = state["steps_since_intervention"]
        self.loss_scale = state["loss_scale"]
