"""The guard contract: a Verdict per step, and the small Guard protocol.

A guard reads a StepRecord after backward and before the optimizer step and says what to
do with the update. It never touches the model or the optimizer: only ``train/loop.py``
and ``train/step.py`` change training state (ARCHITECTURE.md, rule 1).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from trainwell.train.record import StepRecord

Evidence = dict[str, float | int | str]
"""Named numbers behind a verdict (z-scores, window statistics...), written to the logbook."""


class Action(enum.Enum):
    """What the loop does with this update, from mildest to most severe."""

    APPLY = 0
    """Apply it (clip, optimizer step, schedule, EMA). The guards do not object; the loop
    still honours ``record.applied=False`` from the fp16 scaler."""
    SKIP = 1
    """Drop it: zero the gradients; the schedule, the EMA and the guard windows do not advance."""
    ROLLBACK = 2
    """Restore the last healthy checkpoint with a lower learning rate and clipping threshold."""
    STOP = 3
    """Save and raise TrainingHalted with the verdict's message as the diagnosis."""


@dataclass(frozen=True)
class Verdict:
    """One guard's (or the autopilot's) decision about one step."""

    action: Action
    reason: str = ""
    """Short machine tag: 'loss_spike', 'nonfinite', 'skips', 'divergence', 'loss_scale'..."""
    guard: str = ""
    """Name of the guard that decided ('' for APPLY)."""
    evidence: Evidence = field(default_factory=dict)
    message: str = ""
    """One or a few human sentences: what was seen and, for STOP, what to try."""


APPLY = Verdict(Action.APPLY)
"""The verdict of a quiet step (shared: verdicts are frozen)."""


def worst(*verdicts: Verdict) -> Verdict:
    """The most severe verdict (STOP > ROLLBACK > SKIP > APPLY); the first one wins a tie."""
    out = APPLY
    for v in verdicts:
        if v.action.value > out.action.value:
            out = v
    return out


@runtime_checkable
class Guard(Protocol):
    """A stability guard: pure ``check``; ``update`` only for applied steps; named state."""

    name: str

    def check(self, record: StepRecord) -> Verdict:
        """Decide about this step. Pure: must not change the guard's state."""
        ...

    def update(self, record: StepRecord) -> None:
        """Learn from an APPLIED step. A skipped step advances nothing (PL #18828,
        HF #11106, llm.c #711): the loop never calls this for it."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Named plain-Python state (lists, floats, ints) that checkpoints with
        ``torch.load(weights_only=True)``."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def finite(x: float) -> bool:
    return math.isfinite(x)


def plain(x: float) -> float | str:
    """A float that JSON can carry: non-finite values become the strings 'nan', 'inf', '-inf'."""
    return x if math.isfinite(x) else str(x)
