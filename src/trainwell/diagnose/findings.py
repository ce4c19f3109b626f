"""A finding: one problem in plain words, with its evidence and a suggested fix.

``findings.json`` in a run directory is a JSON list of findings; the run report
(``trainwell report RUN_DIR``) renders it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("high", "medium", "low")
"""Levels the run report knows (report/tables.py SEVERITY_ORDER): high = training cannot work
as configured; medium = training works worse than it should; low = worth knowing, no harm yet."""

FINDINGS_FILE = "findings.json"


@dataclass(frozen=True)
class Finding:
    """One diagnosis. ``id`` is stable (tests and scripts match on it); the rest is for people."""

    id: str
    title: str
    severity: str
    evidence: dict[str, Any] = field(default_factory=dict)
    """name -> the measured number (or short text) that triggered the finding."""
    fix: str = ""
    source: str = ""
    """Where the rule and its threshold come from."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "evidence": {k: _plain(v) for k, v in self.evidence.items()},
            "fix": self.fix,
            "source": self.source,
        }

    def describe(self) -> str:
        """The finding as a few lines of plain text (the CLI's output)."""
        evidence = "; ".join(f"{k} {_fmt(v)}" for k, v in self.evidence.items())
        lines = [f"[{self.severity}] {self.title}"]
        if evidence:
            lines.append(f"  evidence: {evidence}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        if self.source:
            lines.append(f"  why: {self.source}")
        return "\n".join(lines)


def write_findings(run_dir: str | Path, findings: Sequence[Finding]) -> Path:
    """Write ``findings.json`` atomically (a crash leaves the old file or the new one)."""
    path = Path(run_dir) / FINDINGS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([f.to_json() for f in findings], indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Worst first; the order of the rules within one severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def _plain(v: Any) -> Any:
    """JSON has no inf/nan: write them as text rather than invalid JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)
