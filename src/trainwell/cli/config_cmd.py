"""``trainwell config show [CONFIG] [--set ...]``: the resolved config with each field's description."""

from __future__ import annotations

import argparse

from trainwell.cli.train_cmd import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="inspect configs")
    csub = p.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the resolved config with every field's description")
    add_config_args(show)
    show.set_defaults(handler=handle_show)


def handle_show(args: argparse.Namespace) -> int:
    from trainwell.config import describe, load_config
    from trainwell.optim import OPTIMIZERS

    cfg = load_config(args.config, args.overrides)
    print(describe(cfg), end="")
    print(f"\n# optim.name choices: {', '.join(OPTIMIZERS.names())}")
    for line in cfg.advice():
        print(f"# advice: {line}")
    return 0
