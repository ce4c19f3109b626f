"""``trainwell logbook RUN_DIR``: what the autopilot did, for people (and logbook.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logbook", help="print a run's logbook of interventions")
    p.add_argument("run_dir")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.errors import TrainwellError
    from trainwell.guards.logbook import read_logbook, render_markdown

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise TrainwellError(f"{run_dir}: no such run directory")
    events = read_logbook(run_dir)
    if not events:
        print(f"{run_dir}: the logbook is empty: the autopilot made no intervention and no restart happened.")
        return 0
    text = render_markdown(events, title=f"Logbook of {run_dir.name}")
    (run_dir / "logbook.md").write_text(text)
    print(text, end="")
    return 0
