"""``trainwell lr-find [CONFIG.toml] [--set KEY=VALUE ...] [--min-lr 1e-7] [--max-lr 10] [--steps 100]``:
the LR range test on a fresh model, in its own run directory (lr_find.json, lr_find.svg)."""

from __future__ import annotations

import argparse

from trainwell.cli.train_cmd import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lr-find", help="LR range test: a suggested learning rate and where training diverges")
    add_config_args(p)
    p.add_argument("--run-dir", help="where to write lr_find.json and lr_find.svg (default runs/<task>-lr-find-<timestamp>/)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="first learning rate of the sweep (default 1e-7)")
    p.add_argument("--max-lr", type=float, default=10.0, help="last learning rate of the sweep (default 10)")
    p.add_argument("--steps", type=int, default=100, help="batches in the sweep (default 100)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.diagnose.lr_find import lr_range_test

    cfg = load_config(args.config, args.overrides)
    r = lr_range_test(cfg, run_dir=args.run_dir, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps)
    print(r.message if r.found else f"no good learning rate found: {r.message}")
    print(f"configured lr {cfg.optim.lr:g}; wrote {r.run_dir / 'lr_find.json'} and {r.run_dir / 'lr_find.svg'}")
    return 0
