"""``trainwell export RUN_DIR --to model.safetensors [--ema]``: the weights of the newest
valid checkpoint as a safetensors file (no pickle: safe to share)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's weights (raw or EMA) to a safetensors file")
    p.add_argument("run_dir")
    p.add_argument("--to", required=True, metavar="FILE", help="output path, e.g. model.safetensors")
    p.add_argument("--ema", action="store_true", help="export the EMA weights instead of the raw ones")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.checkpoint import export_run

    path = export_run(args.run_dir, args.to, ema=args.ema)
    print(f"wrote {path}")
    return 0
