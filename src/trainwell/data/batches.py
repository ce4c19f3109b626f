"""Training data that arrives as batches: a DataLoader, a StatefulDataLoader, or any iterable
of batches (a list, a generator). Batches are used as they come; the step's
``train.accumulate`` micro-batches are cut from each one.

How each kind resumes (a checkpoint, ``trainwell resume``, an autopilot rollback):

- a DataLoader over a map-style dataset with the standard samplers (``shuffle=True`` or
  False, no custom sampler): trainwell draws its batches itself (``SeededBatches``: the
  order is ``ResumableSampler``'s, a pure function of the run's seed and the epoch), so
  resume is exact and the sample ids of every batch are known (quarantine works);
- torchdata's StatefulDataLoader otherwise: through its own ``state_dict``, exact;
- anything else: resume re-reads it from the start and skips the batches already used. That
  is exact only if it yields the same batches in the same order every pass; a warning at the
  start says so. Its batches are not tied to sample ids, so the quarantine cannot keep
  samples out (the warning says that too; the guards still skip bad updates).
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from trainwell.data.loader import split_batch, split_sizes, to_device
from trainwell.data.sampler import ResumableSampler
from trainwell.errors import DataError


class DataWarning(UserWarning):
    """Training data that trainwell can use, but not with every guarantee (exact resume,
    quarantine); the message says what will happen instead."""


class SeededBatches:
    """A DataLoader's batch sampler drawn by trainwell: endless batches of ``batch_size`` ids
    from a ResumableSampler (epochs follow each other; quarantined ids are left out).

    The DataLoader may draw a few batches ahead (worker prefetch), so the position that
    counts is that of the batches *consumed*: each drawn batch is queued with the sampler's
    state after it, and ``pop()`` hands the training loop the ids and that state."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool) -> None:
        self.sampler = ResumableSampler(n, seed, shuffle=shuffle)
        self.batch_size = batch_size
        self.drawn: deque[tuple[Tensor, dict]] = deque()

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            ids = self.sampler.draw(self.batch_size)
            self.drawn.append((ids, self.sampler.state_dict()))
            yield ids.tolist()

    def pop(self) -> tuple[Tensor, dict]:
        return self.drawn.popleft()


class BatchStream:
    """The loop's loader (``next()``, ``skip``, ``state_dict``, ``exclude``) over batches
    that arrive ready-made. ``source`` is what the user gave; ``seeded`` the batch sampler
    trainwell put in a rebuilt DataLoader (None: the source's own order)."""

    def __init__(self, source: Iterable[Any], device: torch.device, accumulate: int,
                 shard: tuple[int, int] = (0, 1), seeded: SeededBatches | None = None) -> None:
        self.source, self.device, self.accumulate, self.shard = source, device, accumulate, shard
        self.seeded = seeded
        self.stateful = seeded is None and callable(getattr(source, "state_dict", None))
        self.consumed = 0
        """Batches handed to the loop since the start of the run."""
        self.samples = 0
        """Samples in them (the ids of a batch not tied to sample ids are these positions)."""
        self._it: Iterator[Any] | None = None
        self._state: dict | None = None
        """The seeded sampler's state after the last consumed batch (None: before the first)."""
        self._one_shot = isinstance(source, Iterator)
        """A generator or iterator: read once (a DataLoader or a list starts again at each pass)."""
        if seeded is None and not self.stateful:
            warnings.warn(self.limits(), DataWarning, stacklevel=3)

    def limits(self) -> str:
        kind = type(self.source).__name__
        ids = ("Its batches are not tied to sample ids, so the autopilot can skip a bad update but "
               "cannot quarantine samples.")
        if isinstance(self.source, Sequence):
            return (f"train_data is a {kind} of batches: resume re-reads it and skips the batches "
                    f"already used (exact). {ids} For quarantine, pass a Dataset or a DataLoader over one.")
        how = ("a one-pass iterator cannot be read again: `trainwell resume` in a new process "
               "skips the batches already used in the fresh iterator it gets" if self._one_shot else
               "resume and rollback re-read it from the start and skip the batches already used, "
               "which gives the same batches only if every pass yields them in the same order "
               "(a custom sampler or an IterableDataset that shuffles re-draws the epoch)")
        return (f"train_data is a {kind} whose position trainwell cannot save: {how}. {ids} For "
                "exact resume and quarantine, pass a DataLoader over a map-style dataset without "
                "a custom sampler (trainwell then draws its batches), or torchdata's StatefulDataLoader "
                "for exact resume.")

    def _next_batch(self) -> Any:
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.source)  # type: ignore[call-overload]
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
                if self._one_shot:
                    break
        raise DataError(f"train_data ran out after {self.consumed} batches: it is a one-pass "
                        f"{type(self.source).__name__}; pass something that can be read again (a "
                        "list, a DataLoader) or set train.steps to at most the batches it holds"
                        if self._one_shot else "train_data yielded no batches")

    def next(self) -> list:
        batch = self._next_batch()
        n = batch_len(batch)
        if self.seeded is not None:
            ids, self._state = self.seeded.pop()
        else:
            ids = torch.arange(self.samples, self.samples + n)
        self.consumed += 1
        self.samples += n
        rank, world = self.shard
        if world > 1:  # this rank's contiguous part, as BatchLoader's shards
            sizes = split_sizes(n, world)
            batch, ids = _cut(batch, sizes, "dist world size")[rank], ids.split(sizes)[rank]
            n = sizes[rank]
        batch = to_device(batch, self.device)
        if self.accumulate == 1:
            return [(ids, batch)]
        sizes = split_sizes(n, self.accumulate)
        return list(zip(ids.split(sizes), _cut(batch, sizes, "train.accumulate"), strict=True))

    def skip(self, batches: int) -> None:
        for _ in range(batches):
            batch = self._next_batch()
            if self.seeded is not None:
                self._state = self.seeded.pop()[1]
            self.consumed += 1
            self.samples += batch_len(batch)

    def exclude(self, ids: frozenset[int]) -> None:
        if self.seeded is not None:
            self.seeded.sampler.exclude = ids

    def state_dict(self) -> dict:
        d: dict[str, Any] = {"consumed": self.consumed, "samples": self.samples}
        if self.seeded is not None:
            d["sampler"] = self._state
        elif self.stateful:
            d["loader"] = self.source.state_dict()  # type: ignore[attr-defined]
        return d

    def load_state_dict(self, d: dict) -> None:
        if d["consumed"] == self.consumed and self._it is not None:
            return  # already there (a rollback puts the data position back where it is)
        self._it = None
        if self.seeded is not None:
            self.seeded.drawn.clear()
            self._state = d["sampler"]
            if self._state is not None:
                self.seeded.sampler.load_state_dict(self._state)
        elif self.stateful:
            self.source.load_state_dict(d["loader"])  # type: ignore[attr-defined]
        else:
            self.consumed = 0
            self.skip(d["consumed"])
        self.consumed, self.samples = d["consumed"], d["samples"]


def seeded_loader(loader: DataLoader, seed: int) -> tuple[DataLoader, SeededBatches] | None:
    """``loader`` rebuilt with trainwell's batch sampler, or None when it has its own order
    that trainwell should not replace (a custom sampler, an IterableDataset, sampling with
    replacement)."""
    bs = loader.batch_sampler
    if type(bs) is not BatchSampler or loader.batch_size is None:
        return None
    inner = bs.sampler
    shuffle = type(inner) is RandomSampler
    if not (shuffle or type(inner) is SequentialSampler):
        return None
    n = len(loader.dataset)  # type: ignore[arg-type]
    if shuffle and (inner.replacement or inner.num_samples != n):
        return None
    if n == 0:
        raise DataError("train_data is a DataLoader over an empty dataset")
    seeded = SeededBatches(n, loader.batch_size, seed, shuffle)
    workers = loader.num_workers
    rebuilt = DataLoader(
        loader.dataset, batch_sampler=seeded, num_workers=workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers, pin_memory_device=loader.pin_memory_device,
        in_order=getattr(loader, "in_order", True),
    )
    return rebuilt, seeded


def batch_len(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor; a batch without one (a
    model that tokenizes its own text) counts the items of its first list of plain values."""
    for leaf in tree_leaves(batch):
        if isinstance(leaf, Tensor) and leaf.ndim:
            return int(leaf.shape[0])
    n = _plain_list_len(batch)
    if n is not None:
        return n
    raise DataError(f"a training batch ({type(batch).__name__}) holds no tensor with a batch "
                    "dimension; batches must be tensors, or tuples, lists or dicts of them")


def _plain_list_len(batch: Any) -> int | None:
    """The length of the first list (or tuple) of plain values (numbers, strings) in ``batch``."""
    if isinstance(batch, dict):
        batch = list(batch.values())
    if not isinstance(batch, (list, tuple)) or not batch:
        return None
    if all(isinstance(v, (str, bytes, int, float, bool)) for v in batch):
        return len(batch)
    return next((n for n in map(_plain_list_len, batch) if n is not None), None)


def _cut(batch: Any, sizes: list[int], key: str) -> list[Any]:
    if min(sizes) == 0:
        raise DataError(f"a batch of {sum(sizes)} samples cannot be split into {len(sizes)} parts "
                        f"({key}): use larger batches or a smaller {key}")
    parts = split_batch(batch, sizes)
    if parts is None:
        raise DataError(f"{key} = {len(sizes)} needs to split each batch along its first "
                        "dimension, and this batch has a leaf that is not a tensor of the whole "
                        f"batch ({type(batch).__name__}); set {key} = 1 or give tensor batches")
    return parts
