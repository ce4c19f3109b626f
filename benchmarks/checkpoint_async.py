"""How long does a checkpoint block training: synchronous save vs AsyncSaver (snapshot only).

State: a ~10M-parameter MLP plus its AdamW state (exp_avg, exp_avg_sq) after one step,
about 120 MB of fp32. A synchronous save blocks for serialise + write + fsync + sha256;
an async save blocks only for the CPU snapshot, and the write happens in a thread.

    PYTHONPATH=src python benchmarks/checkpoint_async.py [--runs 7] [--device cpu] [--dir /tmp]

Prints median and min-max of each over ``--runs`` runs, and the ratios. Timings depend on
the disk and on other load; compare ratios measured in one run, never absolute numbers
across machines.

Recorded (2 CPU cores shared with other jobs, load average ~3.5-4, ext4 on a virtual disk,
torch 2.13.0+cpu, 10.5M parameters + AdamW = 126 MB; ``--runs 15``):

    sync save (blocks)             median 245.4 ms   (min 199.0, max 456.4)
    async save: snapshot (blocks)  median  20.0 ms   (min 11.8, max 243.3)
    async save: until written      median 287.6 ms   (min 200.2, max 539.4)
    blocking time, sync / async    = 12.3x;  async until written / sync = 1.17x

Other runs on the same loaded machine gave blocking ratios from 2.1x to 12.3x: the snapshot
is a memory copy and suffers most when the other jobs saturate memory bandwidth and cores.
Reusing the staging buffers matters: allocating fresh ones each save made the snapshot
~460 ms here (page faults), slower than the synchronous save.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainwell.checkpoint import AsyncSaver, CheckpointConfig, CheckpointStore


def build_state(width: int, depth: int, device: str) -> dict:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(width, width) for _ in range(depth)]
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(8, width, device=device)  # (B, C)
    model(x).square().mean().backward()
    opt.step()  # populate exp_avg and exp_avg_sq
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "train": {"step": 1, "rng": torch.get_rng_state(), "n_params": n_params},
    }


def summary(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:8.1f} ms   (min {min(xs) * 1e3:.1f}, max {max(xs) * 1e3:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed saves per mode (>= 5)")
    ap.add_argument("--width", type=int, default=1024, help="width of each square Linear layer")
    ap.add_argument("--depth", type=int, default=10, help="number of Linear layers")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--device", default="cpu", help="where the state lives: cpu, cuda")
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be >= 5 for a median worth quoting")

    parts = build_state(args.width, args.depth, args.device)
    base = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.dir))
    try:
        measure(parts, base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def measure(parts: dict, base: Path, args: argparse.Namespace) -> None:
    n_params = parts["train"]["n_params"]
    cfg = CheckpointConfig(keep_last=2, keep_healthy=0)
    sync_store = CheckpointStore(base / "sync", cfg)
    saver = AsyncSaver(CheckpointStore(base / "async", cfg))

    sync_store.save(0, parts)  # warm-up: first-touch allocations, page cache, imports
    saver.save(0, parts)
    saver.wait()
    size_mb = sum(f.stat().st_size for f in sync_store.path_for(0).iterdir()) / 1e6

    sync_s, block_s, total_s = [], [], []
    for run in range(1, args.runs + 1):
        t0 = time.perf_counter()
        sync_store.save(run, parts)
        sync_s.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        saver.save(run, parts)  # returns after the snapshot
        block_s.append(time.perf_counter() - t0)
        saver.wait()  # not blocking time: training would be stepping meanwhile
        total_s.append(time.perf_counter() - t0)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {os.cpu_count()} CPUs visible (load average {load:.1f}), torch {torch.__version__}, "
        f"state on {args.device}, writing to {base}"
    )
    print(f"state: {n_params / 1e6:.1f}M parameters + AdamW state = {size_mb:.0f} MB on disk; {args.runs} runs each")
    print(f"sync save (blocks)             {summary(sync_s)}")
    print(f"async save: snapshot (blocks)  {summary(block_s)}")
    print(f"async save: until written      {summary(total_s)}")
    ratio = statistics.median(sync_s) / statistics.median(block_s)
    print(f"blocking time, sync / async    = {ratio:.1f}x (medians)")
    end_to_end = statistics.median(total_s) / statistics.median(sync_s)
    print(f"async until written / sync     = {end_to_end:.2f}x (medians)")
    sync_mb_s = size_mb / statistics.median(sync_s)
    print(f"sync throughput                = {sync_mb_s:.0f} MB/s (serialise + write + fsync + sha256)")


if __name__ == "__main__":
    main()
