"""Samples for probes: a batch of ``n`` samples from training data of any kind fit() takes,
read through the training loader (source.build_loader), for ``trainwell diagnose`` and the
LR range test.

What a probe gets from each kind:

- a map-style or in-memory dataset: ``n`` distinct samples picked by the seed (the first
  ``n`` ids of the training sampler's first epoch, ``randperm(len)``);
- a DataLoader with the standard samplers: its batches as trainwell draws them with the
  seed, concatenated and cut to ``n`` (distinct samples too);
- anything else (a generator or list of batches, a DataLoader with its own sampler, an
  IterableDataset): its next batches, as training would read them, concatenated and cut.

Taking more or fewer samples than one batch holds needs batches whose leaves are all tensors
with the batch dimension; other batches give a DataError that says so, which a probe reports
as what it could not check.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.data import DataLoader

from trainwell.data.batches import BatchStream, DataWarning, batch_len
from trainwell.data.loader import BatchLoader, split_batch
from trainwell.data.source import Loader, build_loader
from trainwell.errors import DataError


def probe_loader(data: Any, collate: Callable[[list[Any]], Any], device: torch.device, *,
                 batch_size: int, seed: int) -> Loader:
    """The training loader of ``data`` (one micro-batch a step), without the warning about
    what resume will do: a probe is never resumed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return build_loader(data, collate, device, batch_size=batch_size, accumulate=1, seed=seed)


def next_batch(loader: Loader) -> Any:
    """The loader's next batch, whole (a probe loader has one micro-batch a step)."""
    return loader.next()[0][1]


def batch_size_of(data: Any, collate: Callable[[list[Any]], Any], *, batch_size: int, seed: int) -> int:
    """Samples in one training step's batch of ``data``: ``batch_size`` for data trainwell
    batches itself, a DataLoader's own, and for other batches that come ready-made the size
    of the next one (read to find out)."""
    loader = probe_loader(data, collate, torch.device("cpu"), batch_size=batch_size, seed=seed)
    if not isinstance(loader, BatchStream):
        return loader.batch_size
    if loader.seeded is not None:
        return loader.seeded.batch_size
    return batch_len(next_batch(loader))


def draw_samples(data: Any, collate: Callable[[list[Any]], Any], n: int, seed: int,
                 device: torch.device) -> tuple[Any, int]:
    """(a batch of ``n`` samples on ``device``, how many it holds): fewer only when the data
    says it holds fewer (a dataset's length, the samples of a list of batches)."""
    loader = probe_loader(data, collate, device, batch_size=n, seed=seed)
    known = data_size(loader)
    n = min(n, known) if known is not None else n
    return take(loader, n), n


def take(loader: Loader, n: int) -> Any:
    """The loader's next ``n`` samples: as many batches as hold them, concatenated and cut."""
    parts, have = [], 0
    while have < n:
        batch = next_batch(loader)
        parts.append(batch)
        have += batch_len(batch)
    whole = parts[0] if len(parts) == 1 else concat(parts)
    return cut(whole, [n, have - n])[0] if have > n else whole


def concat(batches: Sequence[Any]) -> Any:
    """Batches of one structure joined along the batch dimension."""
    flat = [tree_flatten(b) for b in batches]
    spec = flat[0][1]
    if any(s != spec for _, s in flat) or not all(
            isinstance(x, torch.Tensor) and x.ndim for leaves, _ in flat for x in leaves):
        raise DataError(f"needs indexable data (a Dataset, tensors) or batches whose leaves are all tensors with "
                        f"the batch dimension, to join {len(batches)} batches ({type(batches[0]).__name__}) into "
                        "the samples it reads")
    return tree_unflatten([torch.cat(column) for column in zip(*(leaves for leaves, _ in flat), strict=True)],
                          spec)


def cut(batch: Any, sizes: list[int]) -> list[Any]:
    """``batch`` cut into parts of ``sizes`` samples."""
    parts = split_batch(batch, sizes)
    if parts is None:
        raise DataError(f"needs indexable data (a Dataset, tensors) or batches whose leaves are all tensors with "
                        f"the batch dimension, to cut a batch ({type(batch).__name__}) into parts of {sizes} samples")
    return parts


def data_size(loader: Loader) -> int | None:
    """Samples the data holds, when it says (None: a stream of unknown length)."""
    if isinstance(loader, BatchLoader):
        return loader.sampler.n
    if isinstance(loader, BatchStream) and loader.seeded is not None:
        return loader.seeded.sampler.n
    source = loader.source if isinstance(loader, BatchStream) else loader.dataset
    if isinstance(source, Sequence):  # a list of batches
        return sum(batch_len(b) for b in source)
    if isinstance(source, DataLoader):
        source = source.dataset
    try:
        return len(source)  # type: ignore[arg-type]
    except TypeError:  # a generator, an IterableDataset without __len__
        return None
