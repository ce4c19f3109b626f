"""``trainwell train [CONFIG.toml] [--set KEY=VALUE ...] [--run-dir DIR]``."""

from __future__ import annotations

import argparse


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="a TOML run config (default: the default task's defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr=3e-4 --set task.name=digits (repeatable)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a task (the default task when no config is given)")
    add_config_args(p)
    p.add_argument("--run-dir", help="where to write the run (default runs/<task>-<timestamp>/)")
    p.add_argument("--progress", choices=["auto", "on", "off"], help="override log.progress")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.train.loop import run

    overrides = list(args.overrides)
    if args.progress:
        overrides.append(f"log.progress={args.progress}")
    cfg = load_config(args.config, overrides)
    run(cfg, run_dir=args.run_dir)
    return 0
