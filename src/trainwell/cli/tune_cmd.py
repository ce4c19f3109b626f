"""``trainwell tune STUDY.toml [--set KEY=VALUE ...] [--study-dir DIR] [--workers N] [--storage URL]
[--trials N] [--rerun-best K --seeds S]``, ``trainwell tune show STUDY_DIR [--json]`` and
``trainwell tune report STUDY_DIR [--out FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VIEWS = ("show", "report")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="run or continue a hyperparameter study (tune show DIR, tune report DIR to read one)",
        description="Run a study: trainwell tune STUDY.toml. Read one: trainwell tune show STUDY_DIR "
                    "[--json], trainwell tune report STUDY_DIR.",
    )
    p.add_argument("target", metavar="STUDY.toml|show|report", help="a study file, or show/report")
    p.add_argument("study_dir_arg", nargs="?", metavar="STUDY_DIR", help="the study directory (show, report)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run config or [tune] key, e.g. --set train.steps=200 (repeatable)")
    p.add_argument("--study-dir", help="where the study lives (default studies/<tune.name>-<timestamp>/); "
                                       "run again with the same directory to continue it")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="trials at once on this machine (default 1)")
    p.add_argument("--storage", metavar="URL",
                   help="a shared Optuna RDB storage, e.g. postgresql://host/db: processes on any number "
                        "of machines join one study (default: a journal file in the study directory)")
    p.add_argument("--trials", type=int, metavar="N", help="the study's number of trials (overrides tune.trials)")
    p.add_argument("--rerun-best", type=int, default=0, metavar="K", help="then rerun the K best trials ...")
    p.add_argument("--seeds", type=int, default=0, metavar="S", help="... with S other seeds each")
    p.add_argument("--json", action="store_true", help="show: print one JSON object")
    p.add_argument("--out", metavar="FILE", help="report: where to write the page (default STUDY_DIR/study.html)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.errors import ConfigError

    if args.target in VIEWS:
        if not args.study_dir_arg:
            raise ConfigError(f"trainwell tune {args.target} needs the study directory: trainwell tune {args.target} STUDY_DIR")
        return _show(args) if args.target == "show" else _report(args)
    if args.study_dir_arg:
        raise ConfigError(f"unexpected argument {args.study_dir_arg!r}: the study directory is --study-dir DIR")
    from trainwell.tune import tune
    from trainwell.tune.show import render_text

    res = tune(args.target, overrides=args.overrides, study_dir=args.study_dir, workers=args.workers,
               storage=args.storage, trials=args.trials, rerun_best=args.rerun_best, seeds=args.seeds)
    print(render_text(res.view, res.analysis))
    print(f"\nstudy: {res.study_dir}  (trainwell tune show {res.study_dir}; trainwell tune report {res.study_dir})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from trainwell.tune import load_handle, result
    from trainwell.tune.show import render_text, to_json

    res = result(load_handle(args.study_dir_arg, args.storage))
    if args.json:
        json.dump(to_json(res.view, res.analysis), sys.stdout, allow_nan=False)
        print()
    else:
        print(render_text(res.view, res.analysis))
    return 0


def _report(args: argparse.Namespace) -> int:
    from trainwell.tune import load_handle, result
    from trainwell.tune.report import write_study_report

    res = result(load_handle(args.study_dir_arg, args.storage))
    out = Path(args.out) if args.out else Path(args.study_dir_arg) / "study.html"
    print(f"wrote {write_study_report(res.view, res.analysis, out)}")
    return 0
