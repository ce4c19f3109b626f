"""``trainwell diagnose [CONFIG.toml] [--set KEY=VALUE ...] [--run-dir DIR] [--steps N]``:
short probes and the instruments, then findings in plain words (findings.json in the run dir).
Findings are not errors: the exit code is 0 whatever is found."""

from __future__ import annotations

import argparse

from trainwell.cli.train_cmd import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="probe a run config and say in plain words what is wrong with it")
    add_config_args(p)
    p.add_argument("--run-dir", help="where to write findings.json and the short run (default runs/<task>-diagnose-<timestamp>/)")
    p.add_argument("--steps", type=int, default=50, metavar="N",
                   help="steps of the short instrumented run (default 50: five measurements)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.diagnose import diagnose, render
    from trainwell.errors import ConfigError

    cfg = load_config(args.config, args.overrides)
    if args.steps < 10:
        raise ConfigError(f"--steps must be >= 10 (the short run measures every steps/5 steps), got {args.steps}")
    print(render(diagnose(cfg, run_dir=args.run_dir, steps=args.steps)))
    return 0
