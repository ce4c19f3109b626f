"""The resumable, deterministic sampler: which sample ids each batch holds.

The order is a pure function of (seed, epoch): epoch e is ``randperm(n)`` drawn from a
generator seeded with ``seed + e``; the position inside the epoch is a plain integer.
Saving (seed, epoch, position) therefore resumes exactly, without replaying batches
(HF once spent 28 hours skipping 660k batches on resume: transformers #11284).

Quarantined ids are skipped when drawn, so the sampler never serves them again; the
quarantine list itself is part of the checkpointed training state.
Under data parallelism every rank draws the same global batch and keeps its own contiguous
slice of it (data/loader.py), so the global batch is what the config says and the sampler
state is the same on every rank.
"""

from __future__ import annotations

from collections.abc import Set

import torch
from torch import Tensor


class ResumableSampler:
    def __init__(self, n: int, seed: int, *, shuffle: bool = True) -> None:
        if n <= 0:
            raise ValueError("the sampler needs a non-empty dataset")
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self.exclude: Set[int] = frozenset()
        self._perm: Tensor | None = None

    def _order(self) -> Tensor:
        if self._perm is None:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed + self.epoch)
                self._perm = torch.randperm(self.n, generator=g)
            else:
                self._perm = torch.arange(self.n)
        return self._perm

    def draw(self, count: int) -> Tensor:
        """The next ``count`` sample ids (crossing epoch boundaries), skipping excluded ids."""
        out: list[Tensor] = []
        need = count
        guard = 0
        while need > 0:
            order = self._order()
            start = self.position
            take = order[start : start + need]
            self.position += take.numel()
            if self.exclude:
                keep = torch.tensor([int(i) not in self.exclude for i in take], dtype=torch.bool)
                take = take[keep]
            out.append(take)
            need -= take.numel()
            if self.position >= self.n:
                self.epoch += 1
                self.position = 0
                self._perm = None
                guard += 1
                if guard > 2 and len(self.exclude) >= self.n:
                    from trainwell.errors import TrainingHalted

                    raise TrainingHalted(
                        "every sample of the dataset is quarantined: nothing is left to train on "
                        "(see the logbook for why each was quarantined)")
        return torch.cat(out)

    def skip(self, count: int) -> None:
        """Move past ``count`` samples without serving them (rollback past a bad window)."""
        self.draw(count)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "n": self.n}

    def load_state_dict(self, d: dict) -> None:
        if d["n"] != self.n:
            raise ValueError(f"the checkpoint's dataset had {d['n']} samples, this one has {self.n}")
        self.seed, self.epoch, self.position = d["seed"], d["epoch"], d["position"]
        self._perm = None
