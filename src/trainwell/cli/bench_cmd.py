"""``trainwell bench [BENCH.toml] [--set KEY=VALUE ...] [--out DIR] [--workers N] [--storage URL]``,
``trainwell bench show DIR [--json]``, ``trainwell bench report DIR``, ``trainwell bench problems``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmark training algorithms on test problems (bench show DIR to read one)",
        description="Run a benchmark: trainwell bench [BENCH.toml] (no file: the CPU suite, the default "
                    "algorithms, one-shot). Read one: trainwell bench show DIR [--json]. List the "
                    "problems and algorithms: trainwell bench problems.",
    )
    p.add_argument("target", nargs="?", metavar="BENCH.toml|show|report|problems",
                   help="a benchmark file, or show / report / problems")
    p.add_argument("dir_arg", nargs="?", metavar="DIR", help="show, report: the benchmark's folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [bench] key, e.g. --set bench.seeds=5 (repeatable)")
    p.add_argument("--out", help="report: the page (default DIR/bench.html); a run: the benchmark's folder (default benchmarks/<bench.name>-<timestamp>/); "
                                 "run again with the same folder to continue it")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="runs at once on this machine")
    p.add_argument("--storage", metavar="URL", help="a shared Optuna RDB storage for the studies (many machines)")
    p.add_argument("--json", action="store_true", help="show: one JSON object")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.errors import ConfigError

    if args.target == "show":
        if not args.dir_arg:
            raise ConfigError("trainwell bench show needs the benchmark's folder: trainwell bench show DIR")
        return _show(Path(args.dir_arg), args.json)
    if args.target == "problems":
        return _problems()
    if args.target == "report":
        if not args.dir_arg:
            raise ConfigError("trainwell bench report needs the benchmark's folder: trainwell bench report DIR")
        from trainwell.bench.report import write_bench_report

        print(f"wrote {write_bench_report(Path(args.dir_arg), Path(args.out) if args.out else None)}")
        return 0
    if args.dir_arg:
        raise ConfigError(f"unexpected argument {args.dir_arg!r}: the folder is --out DIR")
    from trainwell.bench import bench

    root = bench(args.target, overrides=args.overrides, out_dir=args.out, workers=args.workers,
                 storage=args.storage)
    _show(root, False)
    print(f"\nbenchmark: {root}  (trainwell bench show {root})")
    return 0


def _show(root: Path, as_json: bool) -> int:
    from trainwell.bench.results import read_results
    from trainwell.bench.show import render_text, to_json

    runs, table = read_results(root)
    if as_json:
        json.dump(to_json(runs, table), sys.stdout, allow_nan=False)
        print()
    else:
        print(render_text(runs, table))
    return 0


def _problems() -> int:
    from trainwell.bench.algorithms import ALGORITHMS, DEFAULT_ALGORITHMS
    from trainwell.bench.problems import CPU_SUITE, PROBLEMS

    print("problems (the CPU suite is the default; GPU problems are skipped without a GPU):")
    for name in PROBLEMS:
        p = PROBLEMS.get(name)
        tag = "cpu suite" if name in CPU_SUITE else ("gpu" if p.gpu else "")
        print(f"  {name:<20} {p.metric:<15} {tag:<10} {p.help}")
    print("\nalgorithms (defaults marked *; any optimizer name or 'pkg.mod:make_submission' also works):")
    for name, a in ALGORITHMS.items():
        print(f"  {'*' if name in DEFAULT_ALGORITHMS else ' '} {name:<20} {a.source}")
    return 0
