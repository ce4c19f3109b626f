"""The logbook: every intervention, as JSON lines for machines and markdown for people.

In the spirit of the OPT-175B logbook: per incident, what happened, what was done, and
what happened next. ``logbook.jsonl`` is appended with flush + fsync per event, because a
crash must not lose the record of what the autopilot did to the run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainwell.errors import TrainwellError
from trainwell.train.record import StepRecord

JSONL = "logbook.jsonl"
MARKDOWN = "logbook.md"
OUTCOMES = ("recovered", "summary")
"""Kinds that tell what happened after an incident rather than starting one."""
GROUP_GAP = 100
"""Interventions closer than this many iterations belong to the same incident (a skip
storm, its quarantines and the rollback it triggers are one story)."""


class Logbook:
    """Append-only intervention log in ``run_dir/logbook.jsonl`` (rank 0 writes it)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JSONL

    def write(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append one event (needs 'kind'; 'time' is added) and make it durable."""
        if not isinstance(event.get("kind"), str):
            raise ValueError(f"a logbook event needs a 'kind' string, got {event!r}")
        out = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **event}
        line = json.dumps(_jsonable(out), allow_nan=False, sort_keys=False)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        return out

    def events(self) -> list[dict[str, Any]]:
        return read_logbook(self.run_dir)

    def write_markdown(self) -> Path:
        """Render the whole logbook to ``run_dir/logbook.md`` (atomically: tmp + rename)."""
        target = self.run_dir / MARKDOWN
        tmp = target.with_suffix(".md.tmp")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(render_markdown(self.events()), encoding="utf-8")
        os.replace(tmp, target)
        return target


def read_logbook(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every event of ``run_dir/logbook.jsonl`` ([] when there is none). A torn last line
    (a crash mid-write) is dropped; a broken line elsewhere is an error naming the file."""
    path = Path(run_dir) / JSONL
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    events = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break  # only the last write can be torn
            raise TrainwellError(
                f"{path}: line {n} is not valid JSON; the logbook is damaged"
            ) from None
    return events


def record_fields(record: StepRecord) -> dict[str, Any]:
    """The fields of a StepRecord that every event about a step carries."""
    return {
        "step": record.step,
        "iteration": record.iteration,
        "loss": record.loss,
        "grad_norm": record.grad_norm,
        "loss_scale": record.loss_scale,
        "lr": record.lr,
        "clip_norm": record.clip_norm,
    }


# ---------------------------------------------------------------- markdown


def render_markdown(events: Iterable[Mapping[str, Any]], title: str = "Logbook") -> str:
    """The logbook for people: a summary line, then one section per incident."""
    events = list(events)
    incidents: list[dict[str, Any]] = []  # {"events": [...], "next": [...]}
    last_it: float | None = None
    closed = False
    for e in events:
        if e.get("kind") in OUTCOMES:
            if incidents:
                incidents[-1]["next"].append(e)
                closed = True  # what comes after a recovery is a new incident
            continue
        it = _when(e)
        if closed or not incidents or last_it is None or it is None or abs(it - last_it) > GROUP_GAP:
            closed = False
            incidents.append({"events": [], "next": []})
        incidents[-1]["events"].append(e)
        last_it = it if it is not None else last_it

    count = {k: sum(1 for e in events if e.get("kind") == k) for k in ("skip", "rollback", "stop")}
    quarantined = sum(len(e.get("sample_ids", [])) for e in events if e.get("kind") == "quarantine")
    lines = [f"# {title}", ""]
    if not incidents:
        lines.append("No interventions: the autopilot never had to act.")
    else:
        lines.append(
            f"{len(incidents)} incident(s): {count['skip']} skipped update(s), {quarantined} "
            f"quarantined sample(s), {count['rollback']} rollback(s), {count['stop']} stop(s)."
        )
    for n, inc in enumerate(incidents, 1):
        following = incidents[n]["events"][0] if n < len(incidents) else None
        lines += ["", *_incident(n, inc["events"], inc["next"], following)]
    summaries = [e for e in events if e.get("kind") == "summary"]
    if summaries and not incidents:  # otherwise it tells what happened after the last one
        lines += ["", "## End of run", "", _msg(summaries[-1])]
    return "\n".join(lines) + "\n"


def _incident(
    n: int,
    evs: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    following: dict[str, Any] | None,
) -> list[str]:
    first = evs[0]
    cause = str(first.get("reason") or first.get("kind", "")).replace("_", " ")
    lines = [
        f"## Incident {n}: step {first.get('step', '?')} (iteration {first.get('iteration', '?')}), {cause}",
        "",
    ]

    happened = [e for e in evs if e.get("kind") in ("skip", "rollback", "stop")]
    lines.append("**What happened.**")
    shown = happened[:8] or evs[:1]
    lines += [f"- {_msg(e)}" for e in shown]
    if len(happened) > len(shown):
        lines.append(f"- ... and {len(happened) - len(shown)} more like these.")

    lines += ["", "**What was done.**"]
    skips = [e for e in evs if e.get("kind") == "skip"]
    if skips:
        steps = sorted({e.get("step", 0) for e in skips})
        span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
        lines.append(
            f"- Skipped {len(skips)} update(s) ({span}): no weight, schedule or EMA change."
        )
    for e in evs:
        kind = e.get("kind")
        if kind == "quarantine":
            ids = ", ".join(str(i) for i in e.get("sample_ids", []))
            why = f" ({e['reason']})" if e.get("reason") else ""
            lines.append(f"- Quarantined sample(s) {ids} at step {e.get('step', '?')}{why}.")
        elif kind == "rollback" and not any(x.get("kind") == "restart" for x in evs):
            lines.append("- Decided to roll back (no restart was recorded).")
        elif kind == "stop":
            lines.append("- Stopped the run (state saved).")
        elif kind not in ("skip", "rollback", "quarantine"):
            lines.append(f"- {_msg(e)}")

    lines += ["", "**What happened next.**"]
    nxt = [f"- {_msg(e)}" for e in outcomes]
    if following is not None:
        gap = _when(following), _when(evs[-1])
        later = f", {gap[0] - gap[1]:g} iterations later" if None not in gap else ""
        nxt.append(
            f"- Next intervention at step {following.get('step', '?')} (iteration "
            f"{following.get('iteration', '?')}){later}: {following.get('kind')}."
        )
    elif any(e.get("kind") == "stop" for e in evs):
        nxt.append("- The run stopped here.")
    if not nxt:
        nxt.append("- No further intervention was recorded after this incident.")
    return lines + nxt


def _msg(e: Mapping[str, Any]) -> str:
    return str(e.get("message") or f"{e.get('kind')} at step {e.get('step', '?')}")


def _when(e: Mapping[str, Any]) -> float | None:
    for key in ("iteration", "step"):
        v = e.get(key)
        if isinstance(v, int | float):
            return float(v)
    return None


def _jsonable(x: Any) -> Any:
    """Plain JSON: NaN/Inf become strings, tensors and numpy numbers become Python numbers."""
    if isinstance(x, bool | str) or x is None:
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # torch / numpy
        return _jsonable(x.tolist())
    return str(x)
