"""Lockstep timing: several training loops in one process, taking turns step by step.

Between two processes run one after the other, this 2-core shared machine drifts by
10-20% (other jobs, frequency, memory placement), which hides a 1% difference. Here every
setup runs its loop in its own thread, and a baton lets exactly one thread run at a time:
each setup does a turn of ``turn`` steps, hands over to the next, and waits for its turn
again. The turns of round r of every setup are a few tens of milliseconds apart and see the
same machine state; their ratio is paired at that granularity.

The turn is taken at the sampler draw that starts every iteration (both trainwell's loop
and the plain loop draw once per iteration, at its start, and nothing else draws from a
``ResumableSampler``). Each thread times its own steps: wall time (perf_counter) and the
thread's CPU time (time.thread_time), from the moment it gets the baton to the moment it
gives it back; the hand-over itself is outside every interval.

Fairness:

- Warm code: the first step of a turn runs after another loop's steps evicted this loop's
  code and data from the CPU caches, which a loop running alone never sees, and which
  costs more for the code one setup runs and the other does not (an A/A run with turns of
  one step measured 0.99). So the first step of every turn is not timed: every timed step
  follows a step of its own loop, as in a run alone. ``turn`` is coprime with the log
  cadence (10) and the instruments' (16), so that every kind of step is timed.
- Statistic: the ratio of the time summed over a block of rounds (a mean cost: steps that
  log every 10 or measure every 16 count with their weight), its median over blocks and
  a bootstrap interval over blocks; the median ratio per round is printed too (it leaves
  those periodic steps out).
- Order: in a round, the setup that runs just after another sees the cache that one left.
  The order of the setups in a round rotates every ``block`` rounds, so each setup runs
  first equally often (for two setups: A B for a block, then B A).
- Global RNG: each thread keeps its own torch / random / numpy RNG state, saved when it
  gives the baton away and restored when it gets it back, so each loop draws the same
  random numbers as it would alone (dropout, initialisation) and the losses stay equal to
  a separate run's.
- Set-up: a thread builds its model, optimizer and data while it holds the baton, before
  its first draw; so set-ups never overlap either.

Both loops run in the same Python interpreter and share the caches and the allocator, so
a step is slower than alone (the other loop's step evicted some of its data); the same
holds for both, and the A/A null run (the same setup twice) shows how fair the pairing is.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from trainwell.data.sampler import ResumableSampler


class Lockstep:
    """Runs ``len(bodies)`` callables in threads that take turns at every sampler draw."""

    def __init__(self, n: int, block: int, turn: int) -> None:
        self.n, self.block, self.turn = n, block, turn
        self.wall: list[list[float]] = [[] for _ in range(n)]
        """Per setup: the wall seconds of its step k (k = 0 is the first step; step k is in
        round k // turn, and untimed when k % turn == 0: see the module docstring)."""
        self.cpu: list[list[float]] = [[] for _ in range(n)]
        """Per setup: that step's CPU seconds in its own thread."""
        self.first: list[list[bool]] = [[] for _ in range(n)]
        """Per setup: whether it ran first in the round of step k (the order rotates every
        block of rounds)."""
        self._draws = [0] * n
        self._turn = [threading.Event() for _ in range(n)]
        self._active = list(range(n))
        self._queue: deque[tuple[int, bool]] = deque()
        self._rounds = 0
        self._local = threading.local()
        self._rng: list[Any] = [None] * n
        self._since: list[tuple[float, float] | None] = [None] * n
        self._lead = [False] * n
        self._errors: list[BaseException] = []

    # ---------------------------------------------------------------- turns

    def _next_round(self) -> None:
        order = list(self._active)
        shift = (self._rounds // self.block) % len(order)
        order = order[shift:] + order[:shift]
        self._queue.extend((i, j == 0) for j, i in enumerate(order))
        self._rounds += 1

    def _hand_over(self, me: int, wait: bool) -> None:
        """Give the baton to the next setup in the schedule; if ``wait``, block until it
        comes back (then restore this thread's RNG state)."""
        if wait:
            self._rng[me] = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        while True:
            if not self._queue:
                if not self._active:
                    return
                self._next_round()
            nxt, lead = self._queue.popleft()
            if nxt in self._active:
                break
        self._lead[nxt] = lead
        if nxt == me:
            return  # a block boundary: this setup runs again (it leads the next round)
        if wait:
            self._turn[me].clear()
        self._turn[nxt].set()
        if wait:
            self._turn[me].wait()
            state = self._rng[me]
            torch.set_rng_state(state[0])
            random.setstate(state[1])
            np.random.set_state(state[2])

    def install(self) -> None:
        """Patch ResumableSampler.draw: a draw from a lockstep thread ends its step and
        starts the next one after its next turn; a draw from any other thread is plain."""
        draw, local = ResumableSampler.draw, self._local

        def turn_draw(sampler: ResumableSampler, count: int) -> Any:
            me = getattr(local, "index", None)
            if me is None:
                return draw(sampler, count)
            wall, cpu = time.perf_counter(), time.thread_time()
            since = self._since[me]
            if since is not None:  # the previous step ends here
                self.wall[me].append(wall - since[0])
                self.cpu[me].append(cpu - since[1])
                self.first[me].append(self._lead[me])
            self._draws[me] += 1
            if (self._draws[me] - 1) % self.turn == 0:  # draw 1 ends the set-up, then every turn
                self._hand_over(me, wait=True)
            self._since[me] = (time.perf_counter(), time.thread_time())
            return draw(sampler, count)

        ResumableSampler.draw = turn_draw  # type: ignore[method-assign]

    def run(self, bodies: list[Callable[[], Any]]) -> list[Any]:
        """Start one thread per body; the first round's order is the bodies' order."""
        results: list[Any] = [None] * self.n

        def main(i: int) -> None:
            self._local.index = i
            self._turn[i].wait()
            try:
                results[i] = bodies[i]()
            except BaseException as e:  # noqa: BLE001 - reported by run()
                self._errors.append(e)
            finally:
                self._local.index = None
                self._active.remove(i)
                self._since[i] = None
                self._hand_over(i, wait=False)

        threads = [threading.Thread(target=main, args=(i,), name=f"lockstep-{i}") for i in range(self.n)]
        for t in threads:
            t.start()
        self._next_round()
        first, lead = self._queue.popleft()
        self._lead[first] = lead
        self._turn[first].set()
        for t in threads:
            t.join()
        if self._errors:
            raise self._errors[0]
        return results


# ---------------------------------------------------------------- statistics


def paired_ratios(a: list[float], b: list[float], skip: int, turn: int) -> list[float]:
    """Per round from step ``skip`` on: the sum of a's timed steps in the round over b's
    (the same step numbers of both, run tens of milliseconds apart)."""
    n = min(len(a), len(b))
    out = []
    for start in range(skip - skip % turn, n - turn + 1, turn):
        ks = [k for k in range(max(start, skip), start + turn) if k % turn]
        den = sum(b[k] for k in ks)
        if ks and den > 0:
            out.append(sum(a[k] for k in ks) / den)
    return out


def paired_extra(a: list[float], b: list[float], skip: int, turn: int) -> list[float]:
    """Per round from step ``skip`` on: (a - b) per timed step, in the unit of a and b."""
    n = min(len(a), len(b))
    out = []
    for start in range(skip - skip % turn, n - turn + 1, turn):
        ks = [k for k in range(max(start, skip), start + turn) if k % turn]
        if ks:
            out.append(sum(a[k] - b[k] for k in ks) / len(ks))
    return out


def block_sums(a: list[float], b: list[float], skip: int, turn: int, block: int) -> list[float]:
    """Per block of ``block`` rounds from step ``skip`` on: the sum of a's timed steps over
    b's. Its median over blocks is the mean cost per step: a step that comes every 10 or 16
    steps (logging, the instruments) counts with its weight, which a median per round would
    pass over."""
    n = min(len(a), len(b))
    first = skip - skip % turn
    out = []
    for start in range(first, n, turn * block):
        ks = [k for k in range(max(start, skip), min(start + turn * block, n)) if k % turn]
        if len(ks) >= (turn - 1) * block // 2:
            out.append(sum(a[k] for k in ks) / sum(b[k] for k in ks))
    return out


def block_medians(ratios: list[float], block: int) -> list[float]:
    """The median ratio of each whole block of ``block`` rounds (a last partial block of at
    least half a block is kept)."""
    out = []
    for start in range(0, len(ratios), block):
        part = ratios[start:start + block]
        if len(part) >= max(1, block // 2):
            out.append(statistics.median(part))
    return out


def bootstrap_median(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the median of ``values`` by resampling them (blocks) with replacement."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    x = np.asarray(values)
    meds = np.median(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1)
    lo, hi = np.quantile(meds, [0.025, 0.975])
    return float(lo), float(hi)


def grouped(result: dict) -> dict:
    """{"wall": {setup: per-step seconds summed over its copies}, "cpu": ..., "copies": {setup: n}}."""
    out: dict = {"wall": {}, "cpu": {}, "copies": {}}
    for i, label in enumerate(result["labels"]):
        base = label.partition("#")[0]
        out["copies"][base] = out["copies"].get(base, 0) + 1
        for kind in ("wall", "cpu"):
            steps = result[kind][i]
            have = out[kind].get(base)
            out[kind][base] = list(steps) if have is None else [x + y for x, y in zip(have, steps, strict=False)]
    return out


def describe(results: list[dict], pairs: list[tuple[str, str]], skip: int) -> list[str]:
    """Lines reporting each pair (a, b) over every process's lockstep run: the per-round
    ratio a/b (wall and CPU), its median over all rounds, the median and min-max of the
    block medians, a bootstrap 95% interval of that median over blocks, each process's
    median, and the median ratio by which of the two ran first in the round."""
    lines = []
    turn = results[0]["turn"]
    groups = [grouped(r) for r in results]  # the copies of a setup (label#2) summed
    labels = list(groups[0]["wall"])
    per_step = {lab: [1e3 * statistics.median(x / g["copies"][lab] for k, x in enumerate(g["wall"][lab])
                                              if k >= skip and k % turn) for g in groups] for lab in labels}
    lines.append("  per-step wall ms, median of each process: " + "; ".join(
        f"{lab} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" for lab, v in per_step.items()))
    for a, b in pairs:
        for kind in ("wall", "cpu"):
            pooled: list[float] = []
            extra: list[float] = []
            mean_extra: list[float] = []
            blocks: list[float] = []
            procs: list[float] = []
            lead: dict[bool, list[float]] = {True: [], False: []}
            for r, g in zip(results, groups, strict=True):
                ratios = paired_ratios(g[kind][a], g[kind][b], skip, turn)
                pooled += ratios
                copies = g["copies"][a]
                extra += [1e3 * x / copies for x in paired_extra(g[kind][a], g[kind][b], skip, turn)]
                sums = block_sums(g[kind][a], g[kind][b], skip, turn, r["block"])
                blocks += sums
                procs.append(statistics.median(sums))
                ta, tb = g[kind][a], g[kind][b]
                diffs = [ta[k] - tb[k] for k in range(skip, min(len(ta), len(tb))) if k % turn]
                mean_extra.append(1e3 * statistics.fmean(diffs) / copies)
                first = r["first"][r["labels"].index(a)][skip - skip % turn + turn - 1::turn]  # each round's last step
                for x, lead_a in zip(ratios, first, strict=False):
                    lead[lead_a].append(x)
            lo, hi = bootstrap_median(blocks)
            side = {f"{a} first" if w else f"{b} first": statistics.median(v) for w, v in lead.items() if v}
            lines.append(
                f"  {a}/{b} ({kind}): {statistics.median(blocks):.4f} (95% CI {lo:.4f}-{hi:.4f}; blocks "
                f"{min(blocks):.4f}-{max(blocks):.4f}; {len(blocks)} blocks of {results[0]['block']} rounds of "
                f"{turn} steps: time summed per block), extra {statistics.median(mean_extra):+.4f} ms a step "
                f"(mean; per process " + ", ".join(f"{x:+.4f}" for x in mean_extra) + "); ratio per process "
                + ", ".join(f"{p:.4f}" for p in procs) + f"; median per round {statistics.median(pooled):.4f} "
                f"({statistics.median(extra):+.4f} ms: leaves out the steps that log or measure); by order: "
                + ", ".join(f"{k} {v:.4f}" for k, v in side.items()))
    return lines
