"""Read a run directory into one plain object for the report.

Only ``metrics.jsonl`` is required: a report of a run that crashed before writing its
summary is exactly when a report is wanted. Every other file is optional; one that is
present but unreadable becomes a line in ``RunData.problems`` (shown in the report) rather
than an error, so that one damaged side file does not hide the curves.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainwell.errors import TrainwellError
from trainwell.guards.logbook import read_logbook
from trainwell.report.histfile import HISTOGRAMS_FILE, read_histograms
from trainwell.report.series import columns
from trainwell.sinks import METRICS_FILE, read_jsonl

FINDINGS_FILE = "findings.json"
"""Written by ``trainwell diagnose``: a list of {"title", "severity", "evidence", "fix"}."""


@dataclass
class RunData:
    """Everything the report shows, as read from the run directory."""

    run_dir: Path
    rows: list[dict[str, Any]]
    """metrics.jsonl in logged order (a step can repeat after a rollback or a resume)."""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    logbook: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] | None = None
    """None when there is no findings file (``trainwell diagnose`` was not run)."""
    histograms: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Optional files that exist but could not be read, one line each."""
    _columns: dict[str, tuple[list[float], list[float]]] | None = field(default=None, repr=False)

    def keys(self) -> list[str]:
        """Every numeric metric key, in order of first appearance."""
        return list(self.columns())

    def column(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of ``key`` in logged order; empty lists when it was never logged."""
        return self.columns().get(key, ([], []))

    def columns(self) -> dict[str, tuple[list[float], list[float]]]:
        if self._columns is None:
            self._columns = columns(self.rows)
        return self._columns


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir``; raises TrainwellError when it is not a run directory with metrics."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "no such run directory"
        raise TrainwellError(f"{run_dir}: {what}")
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        raise TrainwellError(
            f"{run_dir}: no {METRICS_FILE} in it; `trainwell report` needs a run directory "
            f"written by `trainwell train` (it holds config.toml and {METRICS_FILE})"
        )
    try:
        rows = [r for r in read_jsonl(metrics) if isinstance(r.get("step"), int | float)]
    except (OSError, UnicodeDecodeError) as e:
        raise TrainwellError(f"{metrics}: cannot be read ({e})") from None
    if not rows:
        raise TrainwellError(f"{metrics}: no metric rows yet; nothing to report")
    data = RunData(run_dir=run_dir, rows=rows)
    data.config = _optional(run_dir / "config.toml", _toml, data.problems) or {}
    data.summary = _optional(run_dir / "summary.json", _json_object, data.problems)
    data.env = _optional(run_dir / "env.json", _json_object, data.problems)
    data.findings = _optional(run_dir / FINDINGS_FILE, _findings, data.problems)
    data.logbook = _optional(run_dir, read_logbook, data.problems) or []
    data.histograms = _optional(run_dir / HISTOGRAMS_FILE, read_histograms, data.problems) or []
    return data


def _optional(path: Path, read: Any, problems: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return read(path)
    except (OSError, ValueError, TrainwellError) as e:  # JSON/TOML errors are ValueErrors
        problems.append(f"{path.name}: could not be read ({e}); its panel is left out")
        return None


def _toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def _json_object(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _findings(path: Path) -> list[dict[str, Any]]:
    value = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(value, dict) and isinstance(value.get("findings"), list):
        value = value["findings"]  # tolerate {"findings": [...]} as well as a bare list
    if not isinstance(value, list) or not all(isinstance(f, dict) for f in value):
        raise ValueError('expected a list of {"title", "severity", "evidence", "fix"} objects')
    return value
