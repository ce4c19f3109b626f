"""Batches for the step: draw ids from the sampler, build the batch, split into micro-batches.

The whole global batch is drawn at once and split into ``accumulate`` micro-batches of
near-equal size, so the data a run sees does not depend on how it is accumulated (the
accumulation test compares exactly that). A dataset with a vectorised ``get_batch(idx)``
skips the per-sample Python loop; one that declares ``get_batch_rowwise = True`` (row i of
``get_batch(idx)`` depends on ``idx[i]`` alone) is fetched once per step and cut into
micro-batch views.

Under data parallelism (``shard=(rank, world)``) every rank draws the same global batch from
the same sampler and keeps its own contiguous slice: the samples of a step do not depend on
the number of processes, the sampler state is identical on every rank (exact resume), and
a quarantine list shared by all ranks excludes the same ids everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_map_only, tree_unflatten
from torch.utils.data import Dataset, IterableDataset

from trainwell.data.sampler import ResumableSampler

MicroBatch = tuple[Tensor, Any]
"""(sample ids (b,), batch on the device)."""


def split_batch(batch: Any, sizes: list[int]) -> list[Any] | None:
    """``batch`` cut along dim 0 into parts of ``sizes`` as views (no copy), or None when a
    leaf is not a tensor whose first dimension is the whole batch. Any structure of tuples,
    lists, dicts and named tuples (torch's pytree walks it)."""
    leaves, spec = tree_flatten(batch)
    total = sum(sizes)
    if not leaves or not all(isinstance(x, Tensor) and x.ndim and x.shape[0] == total for x in leaves):
        return None
    cut = [x.split_with_sizes(sizes) for x in leaves]
    return [tree_unflatten([c[i] for c in cut], spec) for i in range(len(sizes))]


def to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of ``batch`` on ``device``; on a GPU from pinned memory, so that the
    copy overlaps compute. ``batch``: tensors in tuples, lists, dicts and named tuples (the
    containers torch's pytree knows; register a custom one with
    ``torch.utils._pytree.register_pytree_node``)."""
    if device.type == "cpu":
        return batch  # a CPU run's batches are built on the host: nothing to move

    def move(x: Tensor) -> Tensor:
        if device.type == "cuda":
            return x.pin_memory().to(device, non_blocking=True)
        return x.to(device)

    return tree_map_only(Tensor, move, batch)


def split_sizes(total: int, parts: int) -> list[int]:
    """10 into 3 -> [4, 3, 3]."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def fetch(dataset: Dataset, idx: Tensor, collate: Callable[[list[Any]], Any]) -> Any:
    """The batch of samples ``idx`` (B,): the dataset's vectorised ``get_batch`` when it has
    one; else its ``__getitems__`` (torch's batched-fetch protocol, as DataLoader calls it)
    or one ``dataset[i]`` per sample, then ``collate``."""
    get_batch = getattr(dataset, "get_batch", None)
    if get_batch is not None:
        return get_batch(idx)
    get_items = getattr(dataset, "__getitems__", None)
    if get_items is not None:
        return collate(get_items(idx.tolist()))
    return collate([dataset[int(i)] for i in idx])


class BatchLoader:
    """Map-style data: resumable and exact."""

    def __init__(
        self,
        dataset: Dataset,
        sampler: ResumableSampler,
        collate: Callable[[list[Any]], Any],
        device: torch.device,
        batch_size: int,
        accumulate: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if accumulate > batch_size:
            from trainwell.errors import ConfigError

            raise ConfigError(
                f"train.accumulate ({accumulate}) must be <= train.batch_size ({batch_size}): "
                "batch_size is the global batch, split into accumulate micro-batches"
            )
        self.dataset, self.sampler, self.collate = dataset, sampler, collate
        self.device = device
        self.batch_size = batch_size
        part = _shard_slice(batch_size, shard)
        self.shard = part if shard[1] > 1 else None
        self.sizes = split_sizes(part.stop - part.start, accumulate)
        self._rows = bool(getattr(dataset, "get_batch_rowwise", False))
        """Whether the batch may be fetched once and cut into micro-batches: the dataset says
        its get_batch is row-wise (row i of get_batch(idx) depends on idx[i] alone, no
        padding to the batch's longest item), until a batch shows a leaf without the batch
        dimension."""

    def next(self) -> list[MicroBatch]:
        """The step's micro-batches: [(ids (b,), batch on the device)] x accumulate."""
        ids = self.sampler.draw(self.batch_size)  # (B,)
        if self.shard is not None:
            ids = ids[self.shard]  # this rank's (B / world,)
        dataset, collate, device, sizes = self.dataset, self.collate, self.device, self.sizes
        if len(sizes) > 1 and self._rows:
            # a row-wise get_batch: fetch the batch once and cut it into views (one gather per
            # tensor instead of one per micro-batch; the same rows, so the same numbers)
            batch = to_device(dataset.get_batch(ids), device)
            parts = split_batch(batch, sizes)
            if parts is not None:
                return list(zip(ids.split_with_sizes(sizes), parts, strict=True))
            self._rows = False  # not cut along the batch dimension: fetch per micro-batch from now on
        return [(part, to_device(fetch(dataset, part, collate), device)) for part in ids.split_with_sizes(sizes)]

    def skip(self, batches: int) -> None:
        self.sampler.skip(batches * self.batch_size)

    def exclude(self, ids: frozenset[int]) -> None:
        """Never serve these sample ids again (the quarantine list)."""
        self.sampler.exclude = ids

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.sampler.load_state_dict(d["sampler"])


class IterableLoader:
    """Iterable data (streams): batches in stream order. Resume re-reads the stream and
    skips the samples already consumed, which is exact only if the stream is deterministic."""

    def __init__(
        self,
        dataset: IterableDataset,
        collate: Callable[[list[Any]], Any],
        device: torch.device,
        batch_size: int,
        accumulate: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.dataset, self.collate, self.device = dataset, collate, device
        self.batch_size = batch_size
        self.shard = _shard_slice(batch_size, shard)
        self.sizes = split_sizes(self.shard.stop - self.shard.start, accumulate)
        self.consumed = 0
        self._it: Iterator[Any] | None = None
        self.epoch = 0

    def _next_sample(self) -> Any:
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.dataset)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None
                self.epoch += 1
        from trainwell.errors import DataError

        raise DataError("the iterable training dataset yielded no samples")

    def next(self) -> list[MicroBatch]:
        # every rank reads the whole global batch from its copy of the stream and keeps its
        # slice: exact for a deterministic stream, at the cost of reading it world times
        samples = [self._next_sample() for _ in range(self.batch_size)][self.shard]
        first = self.consumed + self.shard.start
        self.consumed += self.batch_size
        out, pos = [], 0
        for size in self.sizes:
            ids = torch.arange(first + pos, first + pos + size)
            out.append((ids, to_device(self.collate(samples[pos:pos + size]), self.device)))
            pos += size
        return out

    def skip(self, batches: int) -> None:
        for _ in range(batches * self.batch_size):
            self._next_sample()
            self.consumed += 1

    def exclude(self, ids: frozenset[int]) -> None:
        """A stream cannot leave samples out: its ids are positions (the quarantine is logged)."""

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, d: dict) -> None:
        self._it, self.consumed, self.epoch = None, 0, 0
        target = d["consumed"]
        while self.consumed < target:
            self._next_sample()
            self.consumed += 1


def _shard_slice(batch_size: int, shard: tuple[int, int]) -> slice:
    """This rank's contiguous part of the global batch (the config check makes
    ``batch_size`` divisible by ``world``)."""
    rank, world = shard
    per = batch_size // world
    return slice(rank * per, (rank + 1) * per)
