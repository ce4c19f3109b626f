"""``trainwell mup check [CONFIG] [--widths W ...]``: the coordinate check, SP against muP.
``trainwell mup show [CONFIG]``: each parameter's muP role and scaling for this model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainwell.cli.train_cmd import add_config_args
from trainwell.errors import ConfigError

CHECK_BASE = 32
"""Default smallest width of the check (then 2x ... 32x)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mup", help="muP: the coordinate check, and each parameter's role")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    c = verbs.add_parser("check", help="train a few steps at growing widths under SP and muP; "
                         "fail when a module's activations grow with the width")
    add_config_args(c)
    c.add_argument("--widths", type=int, nargs="+", metavar="W",
                   help="widths to compare, smallest first; it is the muP base width (default "
                        "32 64 ... 1024: base to 32x as the muP paper's check; small, so that a GPT's "
                        "32x fits a CPU; the scaling does not depend on where it starts)")
    c.add_argument("--steps", type=int, default=4, help="training steps per width (default 4: "
                   "growth shows from the second step on)")
    c.add_argument("--seeds", type=int, default=2, help="seeds averaged per width (default 2)")
    c.add_argument("--out", help="folder for coord_check.html and .json (default runs/<task>-mup-check-<timestamp>/)")
    c.set_defaults(handler=handle_check)
    s = verbs.add_parser("show", help="each parameter's muP role, and its init, lr and eps factors")
    add_config_args(s)
    s.set_defaults(handler=handle_show)


def handle_check(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.mup.coord import check_widths, coord_check, default_widths
    from trainwell.mup.coord_report import html, table
    from trainwell.train.rundir import make_run_dir

    cfg = load_config(args.config, args.overrides)
    widths = args.widths or default_widths(CHECK_BASE)
    problems = check_widths(widths)
    if args.steps < 1 or args.seeds < 1:
        problems.append(f"--steps and --seeds must be >= 1, got {args.steps} and {args.seeds}")
    if cfg.model.kind not in ("mlp", "cnn", "gpt"):
        problems.append(f"model.kind {cfg.model.kind!r} has no muP; the check runs mlp, cnn and gpt")
    if problems:
        raise ConfigError(problems)
    kind = "" if ":" in cfg.task.name else f" {cfg.model.kind}"  # a user task builds its own model
    print(f"coordinate check: {cfg.task.name}{kind}, widths {', '.join(map(str, widths))}, "
          f"{cfg.optim.name} lr {cfg.optim.lr:g}, {args.steps} steps x {args.seeds} seeds", flush=True)
    data = coord_check(cfg, widths, steps=args.steps, seeds=args.seeds,
                       progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    out = make_run_dir(args.out, f"{cfg.task.name}-mup-check")
    (out / "coord_check.json").write_text(json.dumps(data.to_json(), indent=1))
    (out / "coord_check.html").write_text(html(data, f"Coordinate check: {cfg.task.name}"))
    print("\n".join(table(data)))
    sp, mup = data.problems("sp"), data.problems("mup")
    print(f"SP: {'; '.join(sp) if sp else 'no module grows (unusual: widths too close?)'}")
    print(f"muP: {'FAILED: ' + '; '.join(mup) if mup else 'passed: every module keeps its size'} "
          f"({data.seconds:.1f} s); wrote {Path(out) / 'coord_check.html'}")
    for note in data.notes("mup"):
        print(f"muP note: {note}")
    return 1 if mup else 0


def handle_show(args: argparse.Namespace) -> int:
    from trainwell.config import load_config
    from trainwell.mup import eps_mult, lr_mult, spec_of
    from trainwell.tasks import build_task

    cfg = load_config(args.config, [*args.overrides, "model.parametrization=mup"])
    model = build_task(cfg).build_model()
    spec = spec_of(model)
    if spec is None:  # a user task's build_model ignores [model]: it calls trainwell.mup.parametrize itself
        raise ConfigError(f"task {cfg.task.name!r} built its model without muP; call "
                          "trainwell.mup.parametrize in its build_model (docs/mup.md)")
    print(f"{cfg.task.name}: width {spec.width}, base width {spec.base_width} (m = {spec.width_mult:g}); "
          f"{cfg.optim.name} lr {cfg.optim.lr:g}")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    w = max(len(n) for n in spec.roles)
    print(f"{'parameter':<{w}}  {'shape':<14} {'role':<7} {'init x':>7} {'lr x':>8} {'eps x':>8}")
    for n, r in spec.roles.items():
        print(f"{n:<{w}}  {str(shapes[n]):<14} {r.role:<7} {spec.init_scale.get(n, 1.0):>7.3g} "
              f"{lr_mult(r, cfg.optim.name):>8.3g} {eps_mult(r):>8.3g}")
    for name, mult in spec.readouts.items():
        print(f"readout {name}: input x {mult:g}")
    return 0
