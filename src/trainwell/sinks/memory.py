"""MemorySink: keeps every write in a list (tests, notebooks, the tuner reading a run)."""

from __future__ import annotations

from collections.abc import Mapping


class MemorySink:
    """``rows`` holds ``(step, metrics)`` in the order written; ``series(key)`` one curve."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.closed = False

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self.rows.append((step, dict(metrics)))

    def series(self, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` for every write that has ``key``."""
        return [(step, m[key]) for step, m in self.rows if key in m]

    def close(self) -> None:
        self.closed = True
