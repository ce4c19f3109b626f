"""fit() on in-memory data against the loops a user would write by hand.

One Linear(64, 10), batch 128, cross-entropy, one torch thread (--threads). Setups:
  dataloader  a plain loop over DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
  index       the same loop indexing the tensors with a shuffled permutation
  fit_td      trainwell.fit on the TensorDataset (its defaults: guards, minimal instruments,
              TensorBoard, metrics.jsonl), batched in-memory indexing
  fit_dl      trainwell.fit on the DataLoader above (drawn by trainwell: the same fast path)
  fit_hf      trainwell.fit on an HF datasets.Dataset in torch format (skipped without datasets)
The plain loops use torch.optim.AdamW(lr=1e-3) as a user would; fit its defaults (fused AdamW
with betas 0.9/0.95, warmup-cosine, clipping). Each setup's cost per step is marginal: the
time of a long run minus that of a short one, over the extra steps (start-up, run directory
and the end's evaluation cancel out). Rounds interleave the setups in a rotating order; the
figure is the median over rounds.

``--lockstep``: all setups in one process, in threads taking turns of 7 steps
(benchmarks/lockstep.py), paired against the DataLoader loop: finer than separate runs on a
loaded machine. The turn is taken at a ResumableSampler draw, so there the plain loops draw
their ids from trainwell's sampler too (the DataLoader through a batch sampler over it, still
fetching sample by sample and collating): every setup sees the same ids.

    PYTHONPATH=src .venv/bin/python benchmarks/fit_data.py [--rounds 7] [--short 200] [--long 1200]
    PYTHONPATH=src .venv/bin/python benchmarks/fit_data.py --lockstep
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell

N, D, C, B = 8192, 64, 10, 128


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)


def plain(batches, steps: int) -> None:
    model = nn.Linear(D, C)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    done = 0
    while done < steps:
        for xb, yb in batches():
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                return


LOCKSTEP = False
"""Whether the plain loops draw their ids from trainwell's sampler (--lockstep)."""


def run_dataloader(steps: int) -> None:
    x, y = data()
    if LOCKSTEP:
        # a batch sampler yields lists of ints (as torch's BatchSampler over a RandomSampler)
        dl = DataLoader(TensorDataset(x, y), batch_sampler=(ids.tolist() for ids in SamplerBatches(N, steps)))
    else:
        dl = DataLoader(TensorDataset(x, y), batch_size=B, shuffle=True)
    plain(lambda: dl, steps)


def run_index(steps: int) -> None:
    x, y = data()

    def batches():
        if LOCKSTEP:
            for idx in SamplerBatches(N, steps):
                yield x[idx], y[idx]
            return
        perm = torch.randperm(N)
        for i in range(0, N - B + 1, B):
            idx = perm[i:i + B]
            yield x[idx], y[idx]

    plain(batches, steps)


class SamplerBatches:
    """``steps`` batches of ids drawn from trainwell's ResumableSampler (seed 0, as fit's)."""

    def __init__(self, n: int, steps: int) -> None:
        self.n, self.steps = n, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        from trainwell.data.sampler import ResumableSampler

        sampler = ResumableSampler(self.n, seed=0)
        for _ in range(self.steps):
            yield sampler.draw(B)


def fit(train_data, steps: int, loss=nn.functional.cross_entropy) -> None:
    # explicit step-count settings: the short and the long run do the same work per step
    cfg = {"train": {"steps": steps, "batch_size": B}, "schedule": {"warmup_steps": 20},
           "guards": {"spike_window": 128}, "instruments": {"every": 64},
           "checkpoint": {"every_steps": 0, "every_minutes": 0, "final": False}}
    with tempfile.TemporaryDirectory() as d:
        trainwell.fit(nn.Linear(D, C), train_data, loss, cfg, run_dir=os.path.join(d, "r"), progress=False)


def run_fit_td(steps: int) -> None:
    fit(TensorDataset(*data()), steps)


def run_fit_dl(steps: int) -> None:
    fit(DataLoader(TensorDataset(*data()), batch_size=B, shuffle=True), steps)


def run_fit_hf(steps: int) -> None:
    import datasets

    x, y = data()
    ds = datasets.Dataset.from_dict({"x": x.numpy(), "y": y.numpy()}).with_format("torch")
    fit(ds, steps, loss=lambda m, b: nn.functional.cross_entropy(m(b["x"]), b["y"]))


SETUPS = {"dataloader": run_dataloader, "index": run_index, "fit_td": run_fit_td,
          "fit_dl": run_fit_dl, "fit_hf": run_fit_hf}


def timed(fn, steps: int) -> float:
    t = time.perf_counter()
    fn(steps)
    return time.perf_counter() - t


def lockstep_main(setups: dict, steps: int = 3000, skip: int = 210, block: int = 10) -> None:
    import functools

    import lockstep

    global LOCKSTEP
    LOCKSTEP = True
    labels = list(setups)
    lock = lockstep.Lockstep(len(labels), block, turn=7)
    lock.install()
    load = os.getloadavg()[0]
    lock.run([functools.partial(setups[name], steps) for name in labels])
    result = {"labels": labels, "turn": 7, "block": block, "wall": lock.wall, "cpu": lock.cpu, "first": lock.first}
    print(f"lockstep, {steps} steps each, the first {skip} not timed; 1-min load {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    pairs = [(name, "dataloader") for name in labels if name != "dataloader"]
    for line in lockstep.describe([result], pairs, skip):
        if "(cpu)" in line or "per-step" in line:
            print(line)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--short", type=int, default=200)
    p.add_argument("--long", type=int, default=1200)
    p.add_argument("--threads", type=int, default=1)  # 2 spin on a shared 2-core machine (RESULTS.md section 5)
    p.add_argument("--lockstep", action="store_true", help="all setups in one process taking turns of 7 steps")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    setups = dict(SETUPS)
    try:
        import datasets  # noqa: F401
    except ImportError:
        del setups["fit_hf"]
    if args.lockstep:
        lockstep_main(setups)
        return
    names = list(setups)
    per_step: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up: imports, first allocations
        setups[name](40)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            extra = timed(setups[name], args.long) - timed(setups[name], args.short)
            per_step[name].append(extra / (args.long - args.short) * 1e3)
        print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    base = statistics.median(per_step["dataloader"])
    index = statistics.median(per_step["index"])
    print(f"\n{'setup':<12} {'ms/step median':>15} {'min-max':>15} {'/ dataloader':>13} {'- index ms':>11}")
    for name in names:
        v = per_step[name]
        m = statistics.median(v)
        print(f"{name:<12} {m:>15.3f} {min(v):>7.3f}-{max(v):<7.3f} {m / base:>13.2f} {m - index:>+11.3f}")


if __name__ == "__main__":
    main()
