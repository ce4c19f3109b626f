"""JsonlSink: one JSON object per line, ``{"step": 12, "train/loss": 2.31, ...}``.

The file is opened in append mode (a resumed run continues it; nothing written is lost)
and flushed after every line, so a crash of the process loses nothing that was written.
It is not fsync'ed: that costs milliseconds, and only a power cut would need it.

Non-finite values are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``: plain
JSON has no NaN, and Python's ``NaN`` token is rejected by strict readers (jq, browsers).
``read_jsonl`` turns them back into floats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
"""The strings that stand for non-finite numbers in the file."""


def _encode(value: Any) -> Any:
    if type(value) is int or type(value) is bool:
        return value
    x = float(value)  # numpy scalars and 0-d tensors too
    if math.isfinite(x):
        return x
    return "nan" if x != x else ("inf" if x > 0 else "-inf")


class JsonlSink:
    """Appends ``{"step": step, **metrics}`` to ``path`` as one line per ``write``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        # One C-encoder call for the usual row of Python floats and ints (a row of 300
        # instrument values: ~0.1 ms less than a Python loop over them); the loop below
        # only for rows json cannot take as they are (numpy scalars, 0-d tensors) or that
        # hold a non-finite number (json writes NaN, which strict readers reject).
        try:
            line = json.dumps({"step": int(step), **metrics})
        except TypeError:
            line = ""
        if not line or "NaN" in line or "Infinity" in line:  # also a key holding these words: slow, still right
            row = {"step": int(step)}
            for k, v in metrics.items():
                row[k] = _encode(v)
            line = json.dumps(row, allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()  # a crash loses nothing written (not fsync'ed: see the module docstring)

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a metrics file, with ``"nan"``/``"inf"``/``"-inf"`` back as floats.

    A last line cut short by a crash is skipped (everything before it is intact)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows.append({k: NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in row.items()})
    return rows
