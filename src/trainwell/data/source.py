"""What a Task's data can be, and the loader each kind gets.

``train_data`` (and ``eval_data``) may be: a map-style Dataset; in-memory data (tensors,
numpy arrays, a tuple or dict of them, TensorDataset, StackDataset, an HF ``datasets.Dataset``
in torch format), which is indexed a batch at a time (data/inmemory.py); an IterableDataset
of samples; a DataLoader, a StatefulDataLoader or any iterable of batches (data/batches.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from trainwell.data.batches import BatchStream, seeded_loader
from trainwell.data.inmemory import batched_view, is_hf_dataset
from trainwell.data.loader import BatchLoader, IterableLoader, fetch
from trainwell.data.sampler import ResumableSampler
from trainwell.errors import ConfigError, DataError

if TYPE_CHECKING:
    from trainwell.config import RunConfig

Loader = BatchLoader | IterableLoader | BatchStream


def build_loader(data: Any, collate: Callable[[list[Any]], Any], device: torch.device, *, batch_size: int,
                 accumulate: int, seed: int, shard: tuple[int, int] = (0, 1)) -> Loader:
    """The training loader for ``data``. ``batch_size`` and ``collate`` apply to data that
    trainwell batches itself; a DataLoader's batches keep the size it gives them."""
    if isinstance(data, DataLoader):
        return _dataloader(data, device, accumulate, seed, shard)
    if isinstance(data, IterableDataset):
        return IterableLoader(data, collate, device, batch_size, accumulate, shard)
    dataset = batched_view(data) or (data if _map_style(data) else None)
    if dataset is not None:
        sampler = ResumableSampler(_length(dataset), seed=seed)
        return BatchLoader(dataset, sampler, collate, device, batch_size, accumulate, shard)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        return BatchStream(data, device, accumulate, shard)
    raise DataError(f"train_data is a {type(data).__name__}; expected a Dataset, a DataLoader, an "
                    "iterable of batches, or tensors / numpy arrays (one, or a tuple or dict of them)")


def _dataloader(loader: DataLoader, device: torch.device, accumulate: int, seed: int,
                shard: tuple[int, int]) -> Loader:
    """A DataLoader with the standard samplers is drawn by trainwell (exact resume, sample
    ids); over in-memory data with the default collate, without the DataLoader at all (the
    same ids, each batch by one index op per column)."""
    rebuilt = seeded_loader(loader, seed)
    if rebuilt is None:
        return BatchStream(loader, device, accumulate, shard)
    fast = batched_view(loader.dataset)
    if fast is not None and loader.collate_fn is torch.utils.data.default_collate:
        sampler = rebuilt[1].sampler  # the same ids the rebuilt DataLoader would draw
        return BatchLoader(fast, sampler, loader.collate_fn, device, loader.batch_size or 1, accumulate, shard)
    return BatchStream(rebuilt[0], device, accumulate, shard, seeded=rebuilt[1])


def loader_batch_size(cfg: RunConfig, data: Any) -> RunConfig:
    """``cfg`` for ``data``: when it is a DataLoader, whose batches are used as it makes them,
    its batch size is the run's.

    A ``train.batch_size`` the config sets to another value is a ConfigError naming both, not
    a warning: the learning rate, the warmup and the diagnosis' reading of the gradient noise
    are chosen for a batch size, so a run at another one than the config says is not the run
    asked for, and a warning scrolls past while that run goes on. Left unset, train.batch_size
    becomes the DataLoader's, so that the run's config.toml and what reads the batch size (the
    report, diagnose, lr-find) have the one used; ``cfg.fitted`` says where it came from."""
    if not isinstance(data, DataLoader):
        return cfg
    asked, given = cfg.train.batch_size, data.batch_size
    explicit = "batch_size" in cfg.train.model_fields_set
    if given is None:  # batches from its own batch_sampler, of a size only it knows
        if explicit:
            raise ConfigError(f"train.batch_size = {asked} cannot apply: train_data is a DataLoader with its own "
                              "batch_sampler, whose batches are used as they come; leave train.batch_size unset")
        return cfg
    if explicit and asked != given:
        raise ConfigError(f"train.batch_size = {asked}, but train_data is a DataLoader with batch_size={given}, "
                          f"whose batches are used as it makes them: leave train.batch_size unset (or set it to "
                          f"{given}), or build the DataLoader with batch_size={asked}")
    if explicit:
        return cfg
    return cfg.with_value("train.batch_size", given, f"the batch size of the DataLoader given as train_data "
                          f"({given}): its batches are used as it makes them.")


def eval_batches(data: Any, collate: Callable[[list[Any]], Any], *, batch_size: int,
                 max_batches: int) -> Iterator[Any]:
    """The evaluation's batches, the same ones in the same order every time: a map-style or
    in-memory dataset in order in ``batch_size`` slices; a DataLoader or iterable of batches
    as it comes; an IterableDataset batched by ``batch_size``. At most ``max_batches`` (0: all)."""
    dataset = batched_view(data) or (data if _map_style(data) else None)
    if dataset is not None:
        n = _length(dataset)
        stop = -(-n // batch_size)
        for b in range(min(stop, max_batches) if max_batches else stop):
            yield fetch(dataset, torch.arange(b * batch_size, min(n, (b + 1) * batch_size)), collate)
        return
    if isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size, collate_fn=collate)
    if not isinstance(data, Iterable):
        raise DataError(f"eval_data is a {type(data).__name__}; expected a Dataset, a DataLoader, "
                        "an iterable of batches, or tensors / numpy arrays")
    count = 0
    for batch in data:
        yield batch
        count += 1
        if count == max_batches:
            break
    if count == 0:
        raise DataError(f"eval_data ({type(data).__name__}) yielded no batches"
                        + (": a generator is used up after one pass; pass a list or a DataLoader"
                           if isinstance(data, Iterator) else ""))


def first_sample(data: Any) -> Any:
    """One training sample (to size a model's FLOPs), or None when the data cannot give one
    without being read (a stream, batches)."""
    if isinstance(data, DataLoader):
        data = data.dataset
    dataset = batched_view(data) or (data if _map_style(data) else None)
    try:
        return dataset[0] if dataset is not None and len(dataset) else None
    except (TypeError, IndexError, KeyError):  # no len() or no item 0: no sample to size FLOPs by
        return None


def _map_style(data: Any) -> bool:
    """A map-style dataset: a torch Dataset that is not iterable-style, or an HF dataset."""
    return (isinstance(data, Dataset) and not isinstance(data, IterableDataset)) or is_hf_dataset(data)


def _length(dataset: Any) -> int:
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"the {type(dataset).__name__} dataset has no len(); a map-style dataset "
                        "needs __len__ (or make it an IterableDataset)") from None
    if n == 0:
        raise DataError(f"the {type(dataset).__name__} dataset is empty")
    return n
