"""SpikeGuard: skip an update whose loss or gradient norm jumps far above the recent past.

The test is the one OLMo-core (``SkipStepOptimizer``) and llm.c (``-sl``/``-sg``,
``OutlierDetector``) use: a z-score against a rolling window of the previous *applied*
steps, 6 sigma over 128 steps, silent for the first half window. Only upward jumps count:
a loss or gradient norm that drops is not a danger.

Two departures, both for runs that train a model close to zero loss, where the plain test
raised false alarms (a digits MLP trained for 1200 steps, 4x its default: at step 493 a
batch loss of 0.17 against a window mean of 0.007 and std 0.015 was a "14 sigma spike",
and a gradient norm 12x its window mean a "7 sigma" one; the run ended in a rollback with
nothing wrong):

- the loss's spread is floored at ``loss_floor`` x the loss at initialisation (the
  problem's own scale, ln 10 = 2.3 for ten classes): a jump smaller than
  sigma x 2% of that is noise, however quiet the window was;
- the gradient norm is judged on a log scale: near convergence its distribution is heavy
  tailed (the clean run above: 2.1 sigma at most in log space), and a real blow-up is a
  jump by orders of magnitude (an LR x100 burst on a small GPT: 6.7 sigma in log space);
- and a gradient norm under ``grad_floor`` (3) times the window's geometric mean is never
  a spike: where the norm is steady its log-scale spread is small, and a clean run's
  ordinary jump becomes "6 sigma" (a small GPT on bytes-lm, batch 8 x 64 tokens, 400 steps:
  a norm 2.1x and one 1.9x the window's, at 6.1 and 6.0 sigma, the first of them skipped).
  Clipping already bounds what such a step does.

And one addition, for the half window in which the z-score is silent: from the 8th applied
step on, a loss more than twice ``sigma`` robust spreads (median and MAD of the applied
losses so far, with the same floors) above their median is a spike already. A corrupted
sample in a small dataset comes back every epoch; left to enter the window unjudged during
its first half, it inflated the std until no later return stood out (linear regression, 256
samples, batch 16, one target x1000: never skipped, and the run was halted for a
"divergence" at iteration 58 that was that sample). The median and MAD of a handful of
fast-falling losses are wide, and the bar is doubled, so an ordinary early step is far
below it; the gradient norm, which may rise in earnest early on, is not judged then.
"""

from __future__ import annotations

import math
from typing import Any

from trainwell.guards.base import APPLY, Action, Verdict
from trainwell.guards.window import RollingWindow
from trainwell.train.record import StepRecord

EARLY_MIN = 8
"""Applied steps before the early check starts: a median of fewer says little."""
EARLY_FACTOR = 2.0
"""The early check's bar, in multiples of ``sigma``."""


class SpikeGuard:
    """z = (x - mean) / std of the loss and of the grad norm over the last ``window``
    applied steps (median and MAD x 1.4826 when ``robust``); z > ``sigma`` on either -> SKIP.

    ``min_rel_std`` floors the spread at that fraction of the level: on a flat window
    (std ~ 0) float noise would otherwise be a 'spike'; a jump of less than
    sigma x 0.1% of the mean is never one. ``loss_floor`` floors the loss's spread at that
    fraction of the first loss seen (the loss at initialisation). The gradient norm's
    window holds log values; its spread is floored at ln(``grad_floor``) / sigma, so that
    a norm below ``grad_floor`` x the window's geometric mean is never a spike.
    """

    name = "spike"

    def __init__(
        self,
        window: int = 128,
        sigma: float = 6.0,
        robust: bool = False,
        warmup: int | None = None,
        min_rel_std: float = 1e-3,
        loss_floor: float = 0.02,
        grad_floor: float = 3.0,
    ) -> None:
        if window < 2:
            raise ValueError(f"guards.spike_window must be >= 2, got {window}")
        if sigma <= 0:
            raise ValueError(f"guards.spike_sigma must be > 0, got {sigma}")
        self.window = window
        self.sigma = sigma
        self.robust = robust
        # Half a window before judging, as OLMo-core and llm.c: a z-score over a handful
        # of early, fast-falling losses is noise.
        self.warmup = max(2, window // 2 if warmup is None else warmup)
        self.min_rel_std = min_rel_std
        self.loss_floor = loss_floor
        if grad_floor < 1.0:
            raise ValueError(f"guards.spike_grad_floor must be >= 1, got {grad_floor}")
        self.grad_floor = grad_floor
        self._log_floor = math.log(grad_floor) / sigma
        self.loss_ref: float | None = None
        """The first finite loss seen: the scale of the problem."""
        self.loss_window = RollingWindow(window, robust=robust)
        self.grad_window = RollingWindow(window, robust=robust)
        self._ref: tuple[float, float, float, float] | None = None
        """(loss center, loss spread, log grad center, log grad spread) that the next check
        compares with; None while the window is shorter than the warmup. Computed when the
        windows change (update, load), not at every check: the check runs every step."""
        self._early: tuple[float, float] | None = None
        """During the warmup, from ``EARLY_MIN`` applied steps on: (median, robust spread) of
        the losses so far, that a loss must exceed by 2 x sigma spreads to be a spike."""

    def _refresh(self) -> None:
        lw, gw = self.loss_window, self.grad_window
        n = len(lw.values)
        self._ref = self._early = None
        if n >= self.warmup:
            if self.robust:
                (lc, ls), (gc, gs) = lw.median_spread(), gw.median_spread()
            else:  # kept up to date by the windows themselves
                lc, ls, gc, gs = lw.mean, lw.std, gw.mean, gw.std
            gs = max(gs, self.min_rel_std * abs(gc), self._log_floor, 1e-12)
            self._ref = (lc, self._loss_spread(lc, ls), gc, gs)
        elif n >= EARLY_MIN:
            med, spread = lw.median_spread()
            self._early = (med, self._loss_spread(med, spread))

    def _loss_spread(self, center: float, spread: float) -> float:
        """The loss's spread with its floors (the z-score's and the early check's alike): at
        ``min_rel_std`` of its level and at ``loss_floor`` of the loss at initialisation."""
        return max(spread, self.min_rel_std * abs(center), self.loss_floor * abs(self.loss_ref or 0.0), 1e-12)

    def check(self, record: StepRecord) -> Verdict:
        # Non-finite values are the NonFiniteGuard's business, and a z-score of NaN says nothing.
        ref = self._ref
        if not record.finite:
            return APPLY
        if ref is None:
            return self._check_early(record)
        loss_c, loss_s, log_c, log_s = ref
        z_loss = (record.loss - loss_c) / loss_s
        z_grad = (_log(record.grad_norm) - log_c) / log_s  # finite here
        if z_loss <= self.sigma and z_grad <= self.sigma:
            return APPLY
        grad_c = math.exp(log_c)  # the window's geometric mean
        reason = "loss_spike" if z_loss > self.sigma else "grad_spike"
        stat = "median" if self.robust else "mean"
        evidence: dict[str, float | int | str] = {
            "z_loss": z_loss,
            "z_grad": z_grad,
            "loss": record.loss,
            "grad_norm": record.grad_norm,
            f"loss_{stat}": loss_c,
            "loss_std": loss_s,
            f"grad_geo_{stat}": grad_c,
            "grad_log_std": log_s,
            "window_n": len(self.loss_window),
            "sigma": self.sigma,
        }
        what = (
            f"loss {record.loss:.4g} is {z_loss:.1f} sigma above the window {stat} {loss_c:.4g}"
            if reason == "loss_spike"
            else f"grad norm {record.grad_norm:.4g} is {z_grad:.1f} sigma (log scale) above the window "
            f"geometric {stat} {grad_c:.4g}"
        )
        message = (
            f"{reason.replace('_', ' ')} at step {record.step} (iteration {record.iteration}): "
            f"{what} (last {len(self.loss_window)} applied steps, threshold {self.sigma:g} sigma)."
        )
        return Verdict(Action.SKIP, reason, self.name, evidence, message)

    def _check_early(self, record: StepRecord) -> Verdict:
        """The first half window: only a loss far above the median of the losses so far."""
        if self._early is None:
            return APPLY
        med, spread = self._early
        z = (record.loss - med) / spread
        bar = EARLY_FACTOR * self.sigma
        if z <= bar:
            return APPLY
        n = len(self.loss_window)
        evidence: dict[str, float | int | str] = {
            "z_loss": z, "loss": record.loss, "grad_norm": record.grad_norm, "loss_median": med,
            "loss_spread": spread, "window_n": n, "sigma": bar,
        }
        message = (
            f"loss spike at step {record.step} (iteration {record.iteration}): loss {record.loss:.4g} is "
            f"{z:.1f} robust spreads above the median {med:.4g} of the first {n} applied steps "
            f"(early threshold {bar:g}, twice the usual {self.sigma:g}, until the window holds {self.warmup})."
        )
        return Verdict(Action.SKIP, "loss_spike", self.name, evidence, message)

    def update(self, record: StepRecord) -> None:
        if record.finite:
            loss = record.loss
            if self.loss_ref is None:
                self.loss_ref = loss
            self.loss_window.push(loss)
            self.grad_window.push(_log(record.grad_norm))
            self._refresh()

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_window": self.loss_window.tolist(),
            "grad_window": self.grad_window.tolist(),
            "loss_sums": self.loss_window.sums(),
            "grad_sums": self.grad_window.sums(),
            "loss_ref": self.loss_ref,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_window.load(state["loss_window"], state.get("loss_sums"))
        self.grad_window.load(state["grad_window"], state.get("grad_sums"))
        self.loss_ref = state.get("loss_ref")
        self._refresh()


def _log(x: float) -> float:
    """log of a finite gradient norm; a zero norm (nothing to learn from) as a very small one."""
    return math.log(x if x > 1e-30 else 1e-30)
