"""The stability autopilot: guards that return verdicts, the rollback policy, the health
of checkpoints, the quarantine list, and the logbook (the fault drills that prove them: trainwell/drills.py).

The loop integrates them (only it changes training state); see ``autopilot.py``.
"""

from __future__ import annotations

from trainwell.guards.autopilot import Autopilot
from trainwell.guards.base import APPLY, Action, Guard, Verdict, worst
from trainwell.guards.config import GuardsConfig
from trainwell.guards.family import GUARDS, GuardContext, build_guards
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
    "GUARDS",
    "GuardContext",
    "Guard",
    "GuardsConfig",
    "HealthTracker",
    "Logbook",
    "NonFiniteGuard",
    "QuarantineList",
    "RollbackPolicy",
    "SpikeGuard",
    "Verdict",
    "build_guards",
    "find_bad_samples",
    "nonfinite_rows",
    "read_logbook",
    "render_markdown",
    "worst",
]
