"""Diagnosis in plain words (``trainwell diagnose``) and the LR range test (``trainwell lr-find``).

Short probes (input statistics, the depth profile at init, overfit one batch, the BatchNorm
mode check, a short instrumented run) feed small pure rules; each rule returns a Finding
with its evidence and a fix. See docs/diagnose.md.
"""

from __future__ import annotations

import sys
import types
from typing import Any

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


class _CallableModule(types.ModuleType):
    """``trainwell.diagnose(model, data, loss_fn, ...)`` (api.diagnose, for fit() users) is
    this package called: the name is both the public function and the package, and whichever
    import ran first, ``trainwell.diagnose`` is this module (Python sets a package attribute to
    its imported subpackage), so the module itself must be the callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Diagnosis:
        from trainwell.api import diagnose as diagnose_fit

        return diagnose_fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
