"""``trainwell resume RUN_DIR [--max-restarts K] [--nproc N]``: continue a run exactly where
its newest valid checkpoint left it, with the run's own config and, unless ``--nproc`` says
otherwise, as many processes as it last ran with (``env.json``). A run killed before its
first checkpoint starts again from step 0 with its saved config (as ``trainwell train
--resume`` does); one whose checkpoints are all damaged is refused with the reasons."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a run from its newest valid checkpoint")
    p.add_argument("run_dir", help="the run directory (holds config.toml and checkpoints/)")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="supervise: restart when training dies, up to K times")
    p.add_argument("--progress", choices=["auto", "on", "off"], help="override log.progress")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="continue with N local processes through torchrun (default: as many as the run "
                        "last used, from its env.json; 1 = one process without torchrun)")
    p.set_defaults(handler=handle)


def world_size(run_dir: Path) -> int:
    """How many processes the run last trained with (env.json's dist.world_size; 1 if none)."""
    import json

    try:
        env = json.loads((run_dir / "env.json").read_text())
    except (OSError, ValueError):
        return 1
    dist = env.get("dist") if isinstance(env, dict) else None
    size = dist.get("world_size") if isinstance(dist, dict) else None
    return size if isinstance(size, int) and size > 1 else 1


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.errors import CheckpointError, ConfigError
    from trainwell.train.loop import run

    run_dir = Path(args.run_dir)
    config = run_dir / "config.toml"
    if not config.is_file():
        raise CheckpointError(f"{run_dir} is not a trainwell run directory (no config.toml in it)")
    overrides = [f"log.progress={args.progress}"] if args.progress else []
    nproc = world_size(run_dir) if args.nproc is None else args.nproc
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1:
        from trainwell.dist.launch import launch

        if args.nproc is None:
            print(f"trainwell: the run last trained with {nproc} processes (env.json): resuming with "
                  f"{nproc} through torchrun (--nproc 1 resumes in one process)", flush=True)
        _newest(run_dir)
        child = ["train", str(config), "--run-dir", str(run_dir), "--resume"]
        child += [x for o in overrides for x in ("--set", o)]
        return launch(nproc, args.max_restarts, child)
    if args.max_restarts:
        from trainwell.train.supervise import supervise

        child = ["train", str(config)] + [x for o in overrides for x in ("--set", o)]
        return supervise(child, run_dir, args.max_restarts)
    _newest(run_dir)
    run(load_config(config, overrides), run_dir=run_dir, resume=True)
    return 0


def _newest(run_dir: Path) -> None:
    """Refuse early, with the reasons, when the run's checkpoints are all damaged; when it has
    none at all (killed before the first), say that it starts again from step 0."""
    from trainwell.checkpoint import CheckpointStore
    from trainwell.errors import CheckpointError
    from trainwell.train.checkpointing import no_checkpoint_yet

    if no_checkpoint_yet(run_dir):
        print(f"trainwell: {run_dir} has no checkpoint yet (stopped before the first): starting it again "
              "from step 0 with its saved config.toml", flush=True)
        return
    info, skipped = CheckpointStore(run_dir / "checkpoints").latest_valid()
    if info is None:
        raise CheckpointError(f"{run_dir}: no valid checkpoint to resume from ({'; '.join(skipped)})")
