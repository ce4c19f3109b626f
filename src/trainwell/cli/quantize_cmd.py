"""``trainwell quantize RUN_DIR [--method M ...] [--ema] [--out FILE] [--skip LAYER ...]``:
quantise a run's trained model with torchao and print the verdict (metric before and after
against the fp32 spread, file size, CPU latency, per-layer SQNR and outliers); writes the
quantised model(s) as safetensors and the verdict as RUN_DIR/quantize.json."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from trainwell.quantize import METHOD_NAMES as METHODS  # no torch import to build the parser

    p = sub.add_parser("quantize", help="quantise a run's model (torchao) and judge what it cost")
    p.add_argument("run_dir", help="the run directory (holds config.toml and checkpoints/)")
    p.add_argument("--method", nargs="+", choices=list(METHODS), default=None, metavar="METHOD",
                   help=f"one or more of {', '.join(METHODS)} (default: all of them, so that the "
                        "verdict compares them on this machine)")
    p.add_argument("--ema", action="store_true", help="quantise the EMA weights instead of the raw ones")
    p.add_argument("--out", metavar="FILE", help="where to write the quantised model (one --method only; "
                   "default RUN_DIR/quantized/<method>.safetensors)")
    p.add_argument("--skip", nargs="+", default=[], metavar="LAYER",
                   help="linear layers to keep in full precision, by name (e.g. blocks.3.mlp.proj)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON instead of a table")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import json

    from trainwell.quantize import METHOD_NAMES, quantize_run, render_text

    def progress(line: str) -> None:
        print(f"quantize: {line}", file=sys.stderr, flush=True)

    verdict = quantize_run(args.run_dir, args.method or list(METHOD_NAMES), ema=args.ema, out=args.out,
                           skip=args.skip, progress=progress)
    data = verdict.to_json()
    print(json.dumps(data, indent=2) if args.json else render_text(data))
    return 0
