"""In-memory data, indexed a batch at a time: the loader's fast path for data people hold in
memory (tensors, numpy arrays, TensorDataset, StackDataset, HF ``datasets.Dataset``).

``batched_view(data)`` returns a dataset with a vectorised ``get_batch(idx)`` (one index op
per column instead of ``len(idx)`` item calls and a collate), or None when ``data`` is not
in-memory data. A view's batch has the structure ``default_collate`` of the items would
give (tuples as tuples, dicts as dicts), with the same values, so a run's numbers do not
depend on which path built its batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, StackDataset, TensorDataset

from trainwell.data.tensor_rows import TensorRows
from trainwell.errors import DataError

HF_MATERIALISE_MAX_BYTES = 512 * 2**20
"""An HF dataset up to this size (its Arrow table) is read into tensors once, at the start:
indexing tensors took 0.02 ms a batch of 128 x 64 floats where the dataset's own
``ds[ids]`` took 1.18 ms (measured on the 2-core CPU of benchmarks/RESULTS.md). A larger one
is indexed through ``ds[ids]``, a batch at a time, without copying it into memory."""


class DictRows(Dataset):
    """Rows of named tensors sharing their first dimension: an item is ``{name: row}``, a
    batch ``{name: rows}`` (what ``default_collate`` gives for dict items)."""

    get_batch_rowwise = True
    """Row i of get_batch(idx) is row idx[i] (data/loader.py may cut one fetch into micro-batches)."""

    def __init__(self, columns: Mapping[str, Tensor]) -> None:
        self.columns = dict(columns)
        lengths = {k: len(v) for k, v in self.columns.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise DataError(f"the columns must be non-empty and of one length, got {lengths}")
        self._n = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.columns.items()}

    def get_batch(self, idx: Tensor) -> dict[str, Tensor]:
        return {k: v.index_select(0, idx) for k, v in self.columns.items()}


class StackRows(Dataset):
    """A StackDataset whose parts all have a batched view: a batch is the tuple (or dict) of
    the parts' batches."""

    get_batch_rowwise = True

    def __init__(self, parts: tuple[Dataset, ...] | dict[str, Dataset]) -> None:
        self.parts = parts
        first = next(iter(parts.values())) if isinstance(parts, dict) else parts[0]
        self._n = len(first)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Any:
        if isinstance(self.parts, dict):
            return {k: p[i] for k, p in self.parts.items()}
        return tuple(p[i] for p in self.parts)

    def get_batch(self, idx: Tensor) -> Any:
        if isinstance(self.parts, dict):
            return {k: p.get_batch(idx) for k, p in self.parts.items()}  # type: ignore[attr-defined]
        return tuple(p.get_batch(idx) for p in self.parts)  # type: ignore[attr-defined]


class HFRows(Dataset):
    """An HF ``datasets.Dataset`` too large to read into memory, indexed a batch at a time
    with ``ds[ids]`` (Arrow's take, then the dataset's torch formatting)."""

    get_batch_rowwise = True

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        return self.ds[i]

    def get_batch(self, idx: Tensor) -> Any:
        return self.ds[idx.tolist()]


def batched_view(data: Any) -> Dataset | None:
    """``data`` as a dataset with a vectorised ``get_batch``, or None when it is not
    in-memory data (a DataLoader, a file-backed dataset, an iterable...)."""
    if callable(getattr(data, "get_batch", None)):
        return data  # already has the fast path (TensorRows, the built-in tasks' datasets)
    if isinstance(data, (Tensor, np.ndarray)):
        return TensorRows(as_tensor(data, "train_data"))
    if type(data) is tuple and data and all(isinstance(t, (Tensor, np.ndarray)) for t in data):
        return TensorRows(*_same_length(data), as_tuple=True)
    if isinstance(data, Mapping) and data and all(isinstance(t, (Tensor, np.ndarray)) for t in data.values()):
        return DictRows({k: as_tensor(v, f"train_data[{k!r}]") for k, v in data.items()})
    # exact types: a subclass may override __getitem__ (augmentation), which a view would bypass
    if type(data) is TensorDataset:
        return TensorRows(*data.tensors, as_tuple=True)
    if type(data) is StackDataset:
        return _stack_view(data)
    if is_hf_dataset(data):
        return _hf_view(data)
    return None


def as_tensor(x: Tensor | np.ndarray, where: str) -> Tensor:
    """A numpy array as a tensor: float64 arrays become torch's default dtype (float32), as
    a model's weights are; integers and booleans keep their type (labels, token ids)."""
    if isinstance(x, Tensor):
        return x
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{where}: a numpy array of dtype {x.dtype} cannot become a tensor; "
                        "pass numeric arrays (or a Dataset that returns tensors)")
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(torch.get_default_dtype()) if t.is_floating_point() else t


def is_hf_dataset(data: Any) -> bool:
    """An HF ``datasets.Dataset`` (checked by name: the library is optional)."""
    return type(data).__name__ == "Dataset" and type(data).__module__.startswith("datasets.")


def _same_length(arrays: tuple) -> tuple[Tensor, ...]:
    tensors = tuple(as_tensor(a, f"train_data[{i}]") for i, a in enumerate(arrays))
    lengths = [len(t) for t in tensors]
    if len(set(lengths)) != 1:
        raise DataError(f"the arrays of the data tuple disagree on their first dimension {lengths}; "
                        "pass (inputs, targets) with one row per sample in each")
    return tensors


def _stack_view(data: StackDataset) -> Dataset | None:
    parts = data.datasets
    if isinstance(parts, dict):
        views = {k: batched_view(p) for k, p in parts.items()}
        return None if any(v is None for v in views.values()) else StackRows(views)  # type: ignore[arg-type]
    views_t = tuple(batched_view(p) for p in parts)
    return None if any(v is None for v in views_t) else StackRows(views_t)  # type: ignore[arg-type]


def _hf_view(ds: Any) -> Dataset | None:
    """Torch-format HF datasets: read into tensors when small and rectangular, else by batch.
    Other formats (python lists, numpy) keep the generic path (their items are collated)."""
    if (ds.format or {}).get("type") != "torch" or len(ds) == 0:
        return None
    if ds.data.nbytes <= HF_MATERIALISE_MAX_BYTES:
        columns = ds[:]  # {name: (N, ...) tensor} when every column is rectangular and numeric
        if all(isinstance(v, Tensor) and len(v) == len(ds) for v in columns.values()):
            return DictRows(columns)
    return HFRows(ds)
