"""Synthetic StepRecord sequences and a tiny loop driver for the guard tests."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from trainwell.guards import Action, Autopilot, Verdict
from trainwell.train.record import StepRecord


def clean_values(seed: int, n: int = 1000) -> list[dict[str, float]]:
    """A healthy noisy run: a decaying loss with 3% batch noise, a decaying grad norm with
    10% lognormal noise, a flat activation norm. No guard may fire on it."""
    rng = random.Random(seed)
    out = []
    for t in range(n):
        loss = (2.0 + 3.0 * math.exp(-t / 300)) * (1 + 0.03 * rng.gauss(0, 1))
        grad = (0.5 + math.exp(-t / 200)) * math.exp(0.1 * rng.gauss(0, 1))
        act = 1.0 + 0.05 * rng.gauss(0, 1)
        out.append({"loss": loss, "grad_norm": grad, "final_act_norm": act})
    return out


def record(step: int = 0, iteration: int = 1, **kw: Any) -> StepRecord:
    base: dict[str, Any] = {"loss": 2.0, "grad_norm": 1.0, "lr": 1e-3, "clip_norm": 1.0}
    base.update(kw)
    return StepRecord(step=step, iteration=iteration, **base)


def drive(
    pilot: Autopilot,
    values: Iterable[dict[str, Any]],
    on_verdict: Callable[[StepRecord, Verdict], None] | None = None,
    start: tuple[int, int] = (0, 0),
) -> list[Verdict]:
    """Feed values through decide()/after() as the loop would: a refused update does not
    advance ``step``; every value advances ``iteration``; ROLLBACK or STOP ends the feed
    (the loop would restore a checkpoint or halt)."""
    step, iteration = start
    verdicts = []
    for v in values:
        iteration += 1
        rec = record(step, iteration, **v)
        verdict = pilot.decide(rec)
        applied = rec.applied and verdict.action is Action.APPLY
        rec = replace(rec, applied=applied, reason=rec.reason or verdict.reason)
        pilot.after(rec, verdict)
        if on_verdict is not None:
            on_verdict(rec, verdict)
        verdicts.append(verdict)
        step += applied
        if verdict.action in (Action.ROLLBACK, Action.STOP):
            break
    return verdicts


def interventions(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.action is not Action.APPLY]
