"""One process of a tensor-parallel test run, started by torchrun: trains through
``trainwell.train.loop.run`` (as the CLI does) and writes what this rank saw, its history
of logged metrics, to ``OUT/rank{RANK}.json``, so that a test can compare the ranks.

Usage: python -m torch.distributed.run --standalone --nproc-per-node=N tests/dist/tp_worker.py RUN_DIR OUT KEY=VALUE..."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from trainwell.config import load_config
from trainwell.train.loop import run


def main() -> None:
    run_dir, out, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    result = run(load_config(None, overrides), run_dir=run_dir, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(result.history))


if __name__ == "__main__":
    main()
