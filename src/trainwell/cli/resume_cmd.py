"""``trainwell resume RUN_DIR [--max-restarts K]``: continue a run exactly where its newest
valid checkpoint left it, with the run's own config."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a run from its newest valid checkpoint")
    p.add_argument("run_dir", help="the run directory (holds config.toml and checkpoints/)")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="supervise: restart when training dies, up to K times")
    p.add_argument("--progress", choices=["auto", "on", "off"], help="override log.progress")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.checkpoint import CheckpointStore
    from trainwell.config import load_config
    from trainwell.errors import CheckpointError
    from trainwell.train.loop import run

    run_dir = Path(args.run_dir)
    config = run_dir / "config.toml"
    if not config.is_file():
        raise CheckpointError(f"{run_dir} is not a trainwell run directory (no config.toml in it)")
    overrides = [f"log.progress={args.progress}"] if args.progress else []
    if args.max_restarts:
        from trainwell.train.supervise import supervise

        child = ["train", str(config)] + [x for o in overrides for x in ("--set", o)]
        return supervise(child, run_dir, args.max_restarts)
    info, skipped = CheckpointStore(run_dir / "checkpoints").latest_valid()
    if info is None:
        detail = ("; ".join(skipped)) if skipped else "there are none"
        raise CheckpointError(f"{run_dir}: no valid checkpoint to resume from ({detail})")
    run(load_config(config, overrides), run_dir=run_dir, resume=True)
    return 0
