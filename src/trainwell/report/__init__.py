"""The HTML run report: one self-contained page per run directory, viewable offline.

    from trainwell.report import write_report
    path = write_report("runs/digits-20260101-120000")  # -> .../report.html

or ``trainwell report RUN_DIR``. It shows the config and outcome, findings (when
``trainwell diagnose`` wrote them), the training curves with every autopilot intervention
marked, the logbook, the Cockpit-style instrument panels and per-layer statistics.
"""

from __future__ import annotations

from trainwell.report.histfile import HISTOGRAMS_FILE, append_histograms, read_histograms
from trainwell.report.load import FINDINGS_FILE, RunData, load_run
from trainwell.report.page import REPORT_FILE, render_report, write_report
from trainwell.report.series import MAX_POINTS, downsample_indices, segments

__all__ = [
    "FINDINGS_FILE",
    "HISTOGRAMS_FILE",
    "MAX_POINTS",
    "REPORT_FILE",
    "RunData",
    "append_histograms",
    "downsample_indices",
    "load_run",
    "read_histograms",
    "render_report",
    "segments",
    "write_report",
]
