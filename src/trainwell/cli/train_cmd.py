"""``trainwell train [CONFIG.toml] [--set KEY=VALUE ...] [--run-dir DIR] [--resume] [--max-restarts K] [--nproc N]``."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --run-dir if there is one")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="supervise: restart from the newest valid checkpoint when training dies, up to K times "
                        "(with --nproc: torchrun's elastic restarts of the whole group)")
    p.add_argument("--nproc", type=int, default=0, metavar="N",
                   help="train with N local processes through torchrun (DDP, or FSDP2 with dist.parallel=fsdp)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.errors import ConfigError
    from trainwell.train.loop import run
    from trainwell.train.rundir import make_run_dir

    overrides = list(args.overrides)
    if args.progress:
        overrides.append(f"log.progress={args.progress}")
    cfg = load_config(args.config, overrides)  # validate before anything starts
    if args.max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0, got {args.max_restarts}")
    if args.nproc:
        from trainwell.dist.context import check_launch
        from trainwell.dist.launch import launch

        check_launch(cfg, args.nproc)  # exit 2 here, before N processes start and fail alike
        run_dir = make_run_dir(args.run_dir, cfg.task.name)  # one directory for every rank and restart
        child = ["train"] + ([args.config] if args.config else [])
        for item in overrides:
            child += ["--set", item]
        child += ["--run-dir", str(run_dir)] + (["--resume"] if args.resume else [])
        return launch(args.nproc, args.max_restarts, child)
    from trainwell.dist.context import launched_by_torchrun

    if launched_by_torchrun():
        from trainwell.dist.launch import elastic_resume

        if args.max_restarts:
            raise ConfigError("--max-restarts under torchrun: pass --max-restarts to torchrun itself "
                              "(it restarts the whole group), or use trainwell train --nproc N --max-restarts K")
        run(cfg, run_dir=args.run_dir, resume=elastic_resume(args.run_dir, args.resume))
        return 0
    if args.max_restarts:
        from trainwell.train.supervise import supervise

        run_dir = make_run_dir(args.run_dir, cfg.task.name)
        child = ["train"] + ([args.config] if args.config else [])
        for item in overrides:
            child += ["--set", item]
        return supervise(child, Path(run_dir), args.max_restarts)
    if args.resume and not args.run_dir:
        raise ConfigError("--resume needs --run-dir (the run to continue); or use: trainwell resume RUN_DIR")
    run(cfg, run_dir=args.run_dir, resume=args.resume)
    return 0


