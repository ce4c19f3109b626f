"""``trainwell report RUN_DIR [--out FILE]``: one self-contained HTML page about a run
(curves, interventions, instruments, findings), viewable offline."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a run's self-contained HTML report (RUN_DIR/report.html)")
    p.add_argument("run_dir", help="the run directory (holds metrics.jsonl)")
    p.add_argument("--out", metavar="FILE", help="where to write the page (default RUN_DIR/report.html)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.report import write_report

    path = write_report(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0
