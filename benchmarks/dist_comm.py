"""Communication per training step of each way trainwell spreads the GPT over processes:
DDP, FSDP2, tensor parallel (TP), TP with sequence parallel, and FSDP2 x TP (2 x 2).

Each mode runs in its own torchrun group on CPU (gloo), wrapped by trainwell's own
``dist.wrap.wrap_model`` (the code a run uses), and trains a few steps: forward, loss,
backward, global-norm clipping, AdamW. A dispatch mode counts every collective the step
issues (c10d ops, which FSDP2 and DDP call, and the functional collectives DTensor calls)
and their payload per process (all-reduce and reduce-scatter: the input; all-gather: the
output; DDP's gradient bucket is an all-reduce), and what a ring algorithm sends per process
for it: 2 (n - 1) / n of the payload for an all-reduce, (n - 1) / n for the others (n: the
group's size; a group of one sends nothing). The step's scalar gather
of trainwell (one all_gather of a few floats) is not part of this model step.

    python benchmarks/dist_comm.py                       # all modes, the bytes-lm GPT defaults
    python benchmarks/dist_comm.py --modes tp,tp_sp --width 256

Times are wall-clock medians on a shared CPU: communication volume is the robust figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

MODES = {"ddp": (2, 1), "fsdp": (2, 1), "tp": (1, 2), "tp_sp": (1, 2), "fsdp_tp": (2, 2)}
"""mode -> (data-parallel size, tensor-parallel size)."""

COLLECTIVES = {
    # c10d ops (FSDP2 and DDP call these) and functional collectives (DTensor calls these)
    "allreduce_": "all_reduce", "all_reduce": "all_reduce",
    "_allgather_base_": "all_gather", "allgather_": "all_gather", "allgather_into_tensor_coalesced_": "all_gather",
    "all_gather_into_tensor": "all_gather", "all_gather_into_tensor_coalesced": "all_gather",
    "_reduce_scatter_base_": "reduce_scatter", "reduce_scatter_": "reduce_scatter",
    "reduce_scatter_tensor": "reduce_scatter", "reduce_scatter_tensor_coalesced": "reduce_scatter",
    "broadcast_": "broadcast", "all_to_all_single": "all_to_all", "alltoall_base_": "all_to_all",
}


def _nbytes(x: object) -> int:
    import torch

    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    return 0


def _payload(functional: bool, kind: str, args: tuple, out: object) -> int:
    """Bytes per process: what arrives for an all-gather (its output), what goes in otherwise."""
    if kind == "all_gather":
        return _nbytes(out if functional else args[0])
    if kind == "reduce_scatter" and not functional:
        return _nbytes(args[1])  # c10d: (output, input)
    return _nbytes(args[0])


RING = {"all_reduce": 2.0, "all_gather": 1.0, "reduce_scatter": 1.0, "broadcast": 1.0, "all_to_all": 1.0}
"""What each process sends on a ring, in units of (n - 1) / n of the payload (n: the group's size)."""


def _group_size(args: tuple) -> int:
    """The size of the process group an op names (a ProcessGroup object or a group name)."""
    import torch.distributed as dist
    from torch.distributed.distributed_c10d import _resolve_process_group

    for a in reversed(args):  # the group comes after the op's other arguments (a reduce op may be a str)
        if isinstance(a, dist.ProcessGroup):
            return a.size()
        if isinstance(a, str):
            return _resolve_process_group(a).size()
    return dist.get_world_size()


def _counter():  # noqa: ANN202
    """A TorchDispatchMode that counts collectives and their bytes per kind."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CommCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: Counter[str] = Counter()
            self.bytes: Counter[str] = Counter()
            self.wire: Counter[str] = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            name = func.__name__.split(".")[0]
            kind = COLLECTIVES.get(name) if func.namespace in ("c10d", "_c10d_functional") else None
            out = func(*args, **(kwargs or {}))
            if kind is not None:
                self.calls[kind] += 1
                payload = _payload(func.namespace == "_c10d_functional", kind, args, out)
                n = _group_size(args)
                self.bytes[kind] += payload
                self.wire[kind] += RING[kind] * (n - 1) / n * payload
            return out

    return CommCounter()


def worker(mode: str, width: int, depth: int, heads: int, seq: int, batch: int, steps: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from trainwell.dist.config import DistConfig
    from trainwell.dist.context import DistContext
    from trainwell.dist.wrap import wrap_model
    from trainwell.models.gpt import GPT

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    process = dist.get_rank()
    dp, tp = MODES[mode]
    parallel = "ddp" if mode == "ddp" else "fsdp"
    ctx = DistContext(process // tp, dp, process, parallel, "gloo", torch.device("cpu"), tp=tp, process=process)
    cfg = DistConfig(parallel=parallel, tensor_parallel=tp, sequence_parallel=mode == "tp_sp")
    torch.manual_seed(0)
    model = GPT(256, seq, width=width, depth=depth, heads=heads)
    n_params = sum(p.numel() for p in model.parameters())
    model = wrap_model(model, ctx, cfg, "fp32")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1 + ctx.rank)  # one batch per data-parallel rank
    x = torch.randint(0, 256, (batch // dp, seq + 1), generator=gen)
    counter, times = _counter(), []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with counter if i >= 2 else _Null():
            logits = model(x[:, :-1])  # (B, T, V)
            F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten()).backward()
            norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
        float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # the step's host read
        times.append(time.perf_counter() - t0)
    if process == 0:
        print(json.dumps({
            "mode": mode, "processes": dp * tp, "data_parallel": dp, "tensor_parallel": tp, "params": n_params,
            "collectives_per_step": {k: v / steps for k, v in sorted(counter.calls.items())},
            "mb_per_step": {k: round(v / steps / 2**20, 3) for k, v in sorted(counter.bytes.items())},
            "mb_total": round(sum(counter.bytes.values()) / steps / 2**20, 3),
            "ring_mb_sent": round(sum(counter.wire.values()) / steps / 2**20, 3),
            "step_ms_median": round(1e3 * statistics.median(times[2:]), 1),
        }), flush=True)
    dist.destroy_process_group()


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    shape = [str(v) for v in (a.width, a.depth, a.heads, a.seq, a.batch, a.steps)]
    if a.worker:
        worker(a.worker, *map(int, shape))
        return
    print(f"# GPT width {a.width}, depth {a.depth}, heads {a.heads}, seq {a.seq}, global batch {a.batch}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in a.modes.split(","):
        dp, tp = MODES[mode]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={dp * tp}",
               __file__, "--worker", mode, "--width", shape[0], "--depth", shape[1], "--heads", shape[2],
               "--seq", shape[3], "--batch", shape[4], "--steps", shape[5]]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if lines else f"{mode}: failed\n{out.stderr[-2000:]}", flush=True)


if __name__ == "__main__":
    main()
