"""InputGuard: skip an update whose batch holds inputs far outside what training has seen.

A loss spike is one symptom of bad data; a mis-scaled batch is another that the loss may
not show at all (a LayerNorm'd or confidently right model barely reacts to inputs x 1e4,
yet the optimizer state and the BatchNorm statistics still absorb them). The step measures
the root-mean-square of each sample's floating-point input on the device and reads the
batch maximum in its one host sync; this guard compares log(max RMS) with a rolling window
of previous applied steps, like the spike guard (6 sigma). Token ids (integer inputs) are
not measured (record.input_rms = 0).

Bad data does not wait for the window to fill (a Dataset with three samples x1e4 drew them
in its first 64 steps, all applied, and the run diverged). Until the window holds half its
length, the guard judges against a reference it already has, with a wide margin:

- the training data's own scale (``prior``: median and MAD of the log per-sample input RMS
  of a few hundred samples read before the first step, ``guards/prior.py``), for map-style
  data;
- otherwise the batches applied so far, from the second step on.

Either way the warm-up's spread is floored so that a batch is an outlier only when its
largest input RMS is more than ``WARMUP_FACTOR`` (10) x the reference: a prior's per-sample
spread and a handful of batch maxima say little about the spread of batch maxima, and a
false alarm would quarantine good data. The samples quarantined are those beyond the same
threshold.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from trainwell.guards.base import APPLY, Action, Verdict
from trainwell.guards.window import RollingWindow
from trainwell.train.record import StepRecord

MIN_LOG_STD = 0.05
"""Floor of the window's spread in log space (5%): a batch whose largest sample is a few
percent larger than usual is never an outlier."""

WARMUP_FACTOR = 10.0
"""In the warm-up the spread is floored at ln(10) / sigma: a batch is an outlier only when its
largest input RMS is more than 10x the reference (more where the prior's spread is wider).
Clean batch maxima stay within a few times the data's median (docs/autopilot.md has the
figures); a sample x1e4 is 9.2 in log scale, 24 sigma."""


class InputGuard:
    name = "inputs"

    def __init__(self, window: int = 128, sigma: float = 6.0, prior: tuple[float, float] | None = None) -> None:
        self.sigma = sigma
        self.warmup = max(2, window // 2)
        self.window = RollingWindow(window)
        self.prior = prior
        """(center, spread) of the log per-sample input RMS of the training data, measured
        before the first step (guards/prior.py), or None: the reference of the warm-up.
        Not part of the state: it is derived from the data, the same on every (re)start."""
        self._warmup_floor = math.log(WARMUP_FACTOR) / sigma
        self._ref: tuple[float, float] | None = None
        """(mean, std) in log scale that the next check compares with: the window's once it
        holds ``warmup`` values, a warm-up reference before (None: nothing to compare with
        yet); computed when the window changes, not at every check."""
        self._set_ref()

    def _stats(self) -> tuple[float, float]:
        mean, std = self.window.mean_std()
        return mean, max(std, MIN_LOG_STD)

    def check(self, record: StepRecord) -> Verdict:
        x = record.input_rms
        ref = self._ref
        if x <= 0 or ref is None:
            return APPLY
        if not math.isfinite(x):  # NaN/Inf inputs: the sample-level evidence is what matters
            return Verdict(Action.SKIP, "input_nonfinite", self.name, {"input_rms": str(x)},
                           f"non-finite inputs in the batch at step {record.step} (iteration {record.iteration}).")
        mean, std = ref
        z = (math.log(x) - mean) / std
        if z <= self.sigma:
            return APPLY
        typical = math.exp(mean)
        n = len(self.window)
        evidence: dict[str, float | int | str] = {"z_input": z, "input_rms": x, "typical_input_rms": typical,
                                                  "window_n": n, "sigma": self.sigma}
        if n >= self.warmup:
            basis = f"over the last {n} applied steps"
        else:
            evidence["warmup"] = "data prior" if self.prior is not None else "first batches"
            basis = ("against the training data's own scale, measured before the first step" if self.prior is not None
                     else f"against the first {n} applied step(s)") + f"; more than {WARMUP_FACTOR:g}x is needed in the warm-up"
        message = (f"input outlier at step {record.step} (iteration {record.iteration}): the largest "
                   f"per-sample input RMS {x:.4g} is {x / typical:.3g}x the usual {typical:.4g} "
                   f"({z:.1f} sigma in log scale {basis}).")
        return Verdict(Action.SKIP, "input_outlier", self.name, evidence, message)

    def outliers(self, per_sample_rms: Tensor) -> Tensor:
        """(B,) bool: the samples whose own input RMS is an outlier (or non-finite)."""
        rms = per_sample_rms.float()
        bad = ~rms.isfinite()
        if self._ref is not None:  # the reference of the check, warm-up included
            mean, std = self._ref
            bad |= (rms.clamp_min(1e-30).log() - mean) / std > self.sigma
        return bad

    def update(self, record: StepRecord) -> None:
        x = record.input_rms
        if x > 0 and x != math.inf:  # NaN fails the first test
            self.window.push(math.log(x))
            self._set_ref()

    def _set_ref(self) -> None:
        n = len(self.window.values)
        if n >= self.warmup:
            ref: tuple[float, float] | None = self._stats()
        elif self.prior is not None:  # the data's scale: armed from the first step
            ref = (self.prior[0], max(self.prior[1], self._warmup_floor))
        elif n:  # no prior (a stream): the batches applied so far, only an extreme jump counts
            mean, std = self.window.mean_std()
            ref = (mean, max(std, self._warmup_floor))
        else:
            ref = None
        self._ref = ref

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window.tolist(), "sums": self.window.sums()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window.load(state["window"], state.get("sums"))
        self._set_ref()
