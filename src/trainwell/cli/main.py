"""The ``trainwell`` command. One module per command; this one only dispatches and turns
every TrainwellError into one readable line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import os

# OpenMP worker threads that spin while waiting (the default policy) turn a CPU shared with
# any other process into a disaster: measured on a 2-core machine with one busy process
# beside it, 60 steps of the default task took 45.9 s spinning and 29.7 s passive; on a
# quiet machine the two are within noise. Set before torch loads; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence

from trainwell.errors import TrainwellError

EXIT_USER_ERROR = 2
"""Bad input: config, data, task entry point, checkpoint. Same code argparse uses for bad flags."""


def build_parser() -> argparse.ArgumentParser:
    from trainwell.cli import (
        bench_cmd,
        config_cmd,
        diagnose_cmd,
        export_cmd,
        logbook_cmd,
        lrfind_cmd,
        mup_cmd,
        profile_cmd,
        quantize_cmd,
        report_cmd,
        resume_cmd,
        tasks_cmd,
        train_cmd,
        tune_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="trainwell",
        description="Train neural networks well: playbook defaults, a stability autopilot, instruments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (
        train_cmd, resume_cmd, tasks_cmd, config_cmd, export_cmd, logbook_cmd, report_cmd, profile_cmd,
        diagnose_cmd, lrfind_cmd, tune_cmd, bench_cmd, mup_cmd, quantize_cmd,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from trainwell.train.signals import Interrupted

    try:
        return int(args.handler(args) or 0)
    except Interrupted as e:  # SIGTERM/SIGINT: a checkpoint was saved; 128 + signal number
        print(f"trainwell: {e}", file=sys.stderr)
        return e.exit_code
    except TrainwellError as e:
        print(f"trainwell: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
