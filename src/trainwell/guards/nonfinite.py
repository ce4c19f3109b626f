"""NonFiniteGuard: a NaN or Inf loss or gradient norm is never applied.

Maintainers split on what to do next (torchtitan #916: skipping "masks modeling bugs";
nanoGPT #227: a NaN means real instability), so the policy is explicit: skip and count,
or stop with a diagnosis. It is never hidden in the logs only (HF ``logging_nan_inf_filter``).
"""

from __future__ import annotations

from typing import Any, Literal

from trainwell.guards.base import APPLY, Action, Verdict, finite, plain
from trainwell.train.record import StepRecord

FP16_OVERFLOW = "fp16_overflow"
"""record.reason set by the step when the fp16 grad scaler found inf/nan gradients."""

HINTS = (
    "Try: a lower optim.lr (half) or a longer schedule.warmup_steps; check the data near "
    "this iteration for NaN/Inf or extreme values; precision='bf16' or 'fp32' instead of "
    "fp16; keep clip.max_norm > 0; or guards.nonfinite='skip' to skip such steps and go on."
)


class NonFiniteGuard:
    """NaN/Inf loss or grad norm -> SKIP (policy 'skip') or STOP with a diagnosis ('stop').

    With fp16, a record whose reason is 'fp16_overflow' and whose loss is finite is the
    grad scaler doing its job (it skips the update and halves the scale): not a fault. A
    scale that keeps collapsing (below 1) is the rollback policy's trigger. A non-finite
    *loss* is a fault even under fp16: lowering the scale cannot fix a forward overflow.
    """

    name = "nonfinite"

    def __init__(self, policy: Literal["skip", "stop"] = "skip") -> None:
        if policy not in ("skip", "stop"):
            raise ValueError(f"guards.nonfinite must be 'skip' or 'stop', got {policy!r}")
        self.policy = policy
        self.last_finite_step: int | None = None
        self.last_finite_loss: float | None = None
        self.last_finite_grad_norm: float | None = None

    def check(self, record: StepRecord) -> Verdict:
        if record.finite:  # every quiet step: one attribute read
            return APPLY
        loss_ok, grad_ok = finite(record.loss), finite(record.grad_norm)
        if loss_ok and record.reason == FP16_OVERFLOW:
            return APPLY  # the scaler skips this update and lowers its scale itself
        which = (
            "loss and grad_norm"
            if not (loss_ok or grad_ok)
            else ("grad_norm" if loss_ok else "loss")
        )
        evidence: dict[str, float | int | str] = {
            "quantity": which,
            "loss": plain(record.loss),
            "grad_norm": plain(record.grad_norm),
            "loss_scale": plain(record.loss_scale),
        }
        if self.last_finite_step is None:
            last = "no step has been finite yet (check the initialisation and the inputs)"
        else:
            evidence["last_finite_step"] = self.last_finite_step
            evidence["last_finite_loss"] = float(self.last_finite_loss or 0.0)
            evidence["last_finite_grad_norm"] = float(self.last_finite_grad_norm or 0.0)
            last = (
                f"last finite at step {self.last_finite_step}: loss={self.last_finite_loss:.4g}, "
                f"grad_norm={self.last_finite_grad_norm:.4g}"
            )
        message = (
            f"non-finite {which} at step {record.step} (iteration {record.iteration}): "
            f"loss={record.loss}, grad_norm={record.grad_norm}; {last}."
        )
        if self.policy == "stop":
            return Verdict(Action.STOP, "nonfinite", self.name, evidence, f"{message} {HINTS}")
        return Verdict(Action.SKIP, "nonfinite", self.name, evidence, message)

    def update(self, record: StepRecord) -> None:
        if record.finite:
            self.last_finite_step = record.step
            self.last_finite_loss = record.loss
            self.last_finite_grad_norm = record.grad_norm

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_finite_step": self.last_finite_step,
            "last_finite_loss": self.last_finite_loss,
            "last_finite_grad_norm": self.last_finite_grad_norm,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_finite_step = state["last_finite_step"]
        self.last_finite_loss = state["last_finite_loss"]
        self.last_finite_grad_norm = state["last_finite_grad_norm"]
