"""StepRecord: a typed, frozen record of one step, the only currency between the step and plugins."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepRecord:
    step: int
    """Applied optimizer updates before this one (the update this record is about is step+1 if applied)."""
    iteration: int
    """Batches (updates attempted) drawn so far, including this one."""
    loss: float
    """Training loss of this update: sum over all micro-batches / total targets."""
    grad_norm: float
    """Global L2 norm of the gradient before clipping (inf/nan when non-finite)."""
    lr: float
    """Learning rate used (or that would have been used) for this update."""
    clip_norm: float
    """The clipping threshold in force (max_norm * clip multiplier); 0 = no clipping."""
    loss_scale: float = 1.0
    """fp16 dynamic loss scale (1.0 without fp16)."""
    components: dict[str, float] = field(default_factory=dict)
    """Loss components per target, e.g. {'ce': ..., 'z': ...}."""
    n_samples: int = 0
    n_targets: int = 0
    time_s: float = 0.0
    """Wall time of this update (data + forward + backward + step)."""
    data_time_s: float = 0.0
    """Part of time_s spent waiting for data."""
    final_act_norm: float = 0.0
    """RMS of the final layer's input activations (cheap, every step; OPT found its growth predicts divergence). 0 when not tracked."""
    input_rms: float = 0.0
    """Largest per-sample root-mean-square of the floating-point inputs in this update (0 = none measured, e.g. token ids)."""
    applied: bool = True
    """Whether the optimizer update was applied."""
    reason: str = ""
    """Why not applied (e.g. 'fp16_overflow', 'nonfinite', 'loss_spike')."""

    @property
    def finite(self) -> bool:
        """Loss and grad norm both finite."""
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)

    @property
    def clipped(self) -> bool:
        return self.clip_norm > 0 and self.grad_norm > self.clip_norm
