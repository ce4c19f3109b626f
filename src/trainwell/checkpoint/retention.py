"""Which checkpoints to delete: keep the newest, keep the healthy, never gamble.

A rotation that counted only "the newest N" once left a run with nothing but checkpoints
saved after its loss had gone NaN. The rules here, in order:

1. If the newest checkpoint does not verify, delete nothing (something is wrong with the
   disk or the writer; what exists may be all that is left).
2. Keep the newest ``keep_last`` valid checkpoints.
3. Keep the newest ``keep_healthy`` healthy ones, and always the newest healthy one.
4. Keep the checkpoint just written.
5. Never delete a checkpoint that does not verify: it is evidence, and ``list()`` reports it.

Until any checkpoint carries a health mark, every valid checkpoint before the newest counts
as healthy (training went on past it), so retention is simply ``keep_last`` (in general the
newest ``max(keep_last, keep_healthy + 1)``, as rule 3 still holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    step: int
    valid: bool
    healthy: bool | None
    """True / False from a health mark, None when unmarked."""


def effective_health(cands: Sequence[Candidate]) -> dict[int, bool]:
    """Step -> healthy, applying the "unmarked run" rule above. Invalid ones are never healthy."""
    if not cands:
        return {}
    newest = max(c.step for c in cands)
    if all(c.healthy is None for c in cands):
        return {c.step: c.valid and c.step < newest for c in cands}
    return {c.step: c.valid and c.healthy is True for c in cands}


def plan_deletions(
    cands: Sequence[Candidate],
    keep_last: int,
    keep_healthy: int,
    just_written: int | None = None,
) -> list[int]:
    """The steps to delete, oldest first."""
    if not cands:
        return []
    by_step = sorted(cands, key=lambda c: c.step, reverse=True)
    if not by_step[0].valid:
        return []
    valid = [c for c in by_step if c.valid]
    keep = {c.step for c in valid[:keep_last]}
    health = effective_health(by_step)
    healthy = [c for c in valid if health[c.step]]
    keep |= {c.step for c in healthy[: max(keep_healthy, 1)]}
    if just_written is not None:
        keep.add(just_written)
    return sorted(c.step for c in valid if c.step not in keep)
