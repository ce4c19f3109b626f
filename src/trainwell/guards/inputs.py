"""InputGuard: skip an update whose batch holds inputs far outside what training has seen.

A loss spike is one symptom of bad data; a mis-scaled batch is another that the loss may
not show at all (a LayerNorm'd or confidently right model barely reacts to inputs x 1e4,
yet the optimizer state and the BatchNorm statistics still absorb them). The step measures
the root-mean-square of each sample's floating-point input on the device and reads the
batch maximum in its one host sync; this guard compares log(max RMS) with a rolling window
of previous applied steps, like the spike guard (6 sigma, silent for half a window). Token
ids (integer inputs) are not measured (record.input_rms = 0).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from trainwell.guards.base import APPLY, INSIDE, Action, Verdict
from trainwell.guards.window import RollingWindow
from trainwell.train.record import StepRecord

MIN_LOG_STD = 0.05
"""Floor of the window's spread in log space (5%): a batch whose largest sample is a few
percent larger than usual is never an outlier."""


class InputGuard:
    name = "inputs"

    def __init__(self, window: int = 128, sigma: float = 6.0) -> None:
        self.sigma = sigma
        self.warmup = max(2, window // 2)
        self.window = RollingWindow(window)
        self.limit = math.inf
        """The input RMS below which a batch is surely no outlier (``check``'s threshold as a
        raw value, a relative 1e-9 inside it; the autopilot's quiet-step test)."""
        self._ref: tuple[float, float] | None = None
        """(mean, std) of the window for the next check, None during the warmup; computed
        when the window changes, not at every check."""

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
        evidence: dict[str, float | int | str] = {"z_input": z, "input_rms": x, "typical_input_rms": typical,
                                                  "window_n": len(self.window), "sigma": self.sigma}
        message = (f"input outlier at step {record.step} (iteration {record.iteration}): the largest "
                   f"per-sample input RMS {x:.4g} is {x / typical:.3g}x the usual {typical:.4g} "
                   f"({z:.1f} sigma in log scale over the last {len(self.window)} applied steps).")
        return Verdict(Action.SKIP, "input_outlier", self.name, evidence, message)

    def outliers(self, per_sample_rms: Tensor) -> Tensor:
        """(B,) bool: the samples whose own input RMS is an outlier (or non-finite)."""
        rms = per_sample_rms.float()
        bad = ~rms.isfinite()
        if len(self.window) >= self.warmup:
            mean, std = self._stats()
            bad |= (rms.clamp_min(1e-30).log() - mean) / std > self.sigma
        return bad

    def update(self, record: StepRecord) -> None:
        x = record.input_rms
        if x > 0 and x != math.inf:  # NaN fails the first test
            self.window.push(math.log(x))
            self._set_ref()

    def _set_ref(self) -> None:
        self._ref = ref = self._stats() if len(self.window.values) >= self.warmup else None
        self.limit = math.inf if ref is None else math.exp(ref[0] + self.sigma * ref[1]) * (1.0 - INSIDE)

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window.tolist(), "sums": self.window.sums()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window.load(state["window"], state.get("sums"))
        self._set_ref()
