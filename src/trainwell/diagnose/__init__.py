"""Diagnosis in plain words (``trainwell diagnose``) and the LR range test (``trainwell lr-find``).

Short probes (input statistics, the depth profile at init, overfit one batch, the BatchNorm
mode check, a short instrumented run) feed small pure rules; each rule returns a Finding
with its evidence and a fix. See docs/diagnose.md.
"""

from __future__ import annotations

from trainwell.callable_package import make_callable
from trainwell.diagnose.findings import FINDINGS_FILE, SEVERITIES, Finding, write_findings
from trainwell.diagnose.run import Diagnosis, apply_rules, diagnose, render

__all__ = [
    "FINDINGS_FILE",
    "SEVERITIES",
    "Diagnosis",
    "Finding",
    "apply_rules",
    "diagnose",
    "render",
    "write_findings",
]


make_callable(__name__, "trainwell.api:diagnose")  # trainwell.diagnose(model, data, loss_fn): callable_package.py says why
