"""The stability autopilot: guards that return verdicts, the rollback policy, the health
of checkpoints, the quarantine list, the logbook, and fault injection to prove them.

The loop integrates them (only it changes training state); see ``autopilot.py``.
"""

from __future__ import annotations

from trainwell.guards.autopilot import Autopilot
from trainwell.guards.base import APPLY, Action, Guard, Verdict, worst
from trainwell.guards.config import GuardsConfig
from trainwell.guards.faults import FaultsConfig, apply_to_batch, force_overflow, lr_factor
from trainwell.guards.health import HealthTracker
from trainwell.guards.logbook import Logbook, read_logbook, render_markdown
from trainwell.guards.nonfinite import NonFiniteGuard
from trainwell.guards.quarantine import QuarantineList, find_bad_samples, nonfinite_rows
from trainwell.guards.rollback import RollbackPolicy
from trainwell.guards.spike import SpikeGuard

__all__ = [
    "APPLY",
    "Action",
    "Autopilot",
    "FaultsConfig",
    "Guard",
    "GuardsConfig",
    "HealthTracker",
    "Logbook",
    "NonFiniteGuard",
    "QuarantineList",
    "RollbackPolicy",
    "SpikeGuard",
    "Verdict",
    "apply_to_batch",
    "find_bad_samples",
    "force_overflow",
    "lr_factor",
    "nonfinite_rows",
    "read_logbook",
    "render_markdown",
    "worst",
]
