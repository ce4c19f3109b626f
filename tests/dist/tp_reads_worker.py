"""One process of a tensor-parallel run whose host reads are counted, started by torchrun:
builds the run as the loop does, takes 3 steps (lazy initialisation), then counts
torch.Tensor's reading methods (the optimizer's host step counters aside) over 10 steps and writes the count to ``OUT/rank{RANK}.json``.

Usage: python -m torch.distributed.run --standalone --nproc-per-node=N tests/dist/tp_reads_worker.py RUN_DIR OUT KEY=VALUE..."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from sync_helpers import count_reads  # noqa: E402

from trainwell.config import load_config  # noqa: E402
from trainwell.train import loop  # noqa: E402
from trainwell.train.flight import build_flight  # noqa: E402

STEPS = 10


def optimizer_steps(optimizer: torch.optim.Optimizer) -> frozenset[int]:
    """The optimizer's step counters: under DTensor parameters torch's AdamW runs its foreach
    kernel, which keeps them as host tensors (on a GPU too, unless ``capturable``) and reads
    them with ``.item()``: host reads, not device syncs."""
    return frozenset(id(s["step"]) for s in optimizer.state.values() if isinstance(s.get("step"), torch.Tensor))


def main() -> None:
    run_dir, out, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    f = build_flight(load_config(None, overrides), None, run_dir, False, False, ())
    for _ in range(3):
        loop._one_step(f)
    with pytest.MonkeyPatch.context() as patch:
        seen = count_reads(patch, f.st.loader, host=optimizer_steps(f.st.optimizer))
        for _ in range(STEPS):
            loop._one_step(f)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps({"steps": STEPS, "reads": dict(seen)}))
    f.st.dist.close()


if __name__ == "__main__":
    main()
