"""What a checkpoint part may hold, checked before writing, and the CPU snapshot of it.

A part is a nested structure of tensors and plain data, exactly what
``torch.load(weights_only=True)`` reads back. Checking at save time turns "this
checkpoint cannot be loaded" from a surprise at resume into an error at the first save.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from trainwell.errors import CheckpointError

_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
"""Exact types that torch's weights-only unpickler accepts as values (subclasses such as
IntEnum or numpy scalars would be pickled by class and refused on load)."""
_TENSORS = (torch.Tensor, torch.nn.Parameter)
_MAPPINGS = (dict, OrderedDict)
_SEQUENCES = (list, tuple, set)


def check_plain_data(obj: Any, where: str) -> None:
    """Raise CheckpointError naming the first value that weights-only loading would refuse."""
    stack: list[tuple[Any, str]] = [(obj, where)]
    while stack:
        x, at = stack.pop()
        t = type(x)
        if t in _LEAVES or t in _TENSORS or t is torch.Size:
            continue
        if t in _MAPPINGS:
            for k, v in x.items():
                if type(k) not in _LEAVES:
                    raise CheckpointError(_refusal(k, f"{at} key {k!r}"))
                stack.append((v, f"{at}[{k!r}]"))
        elif t in _SEQUENCES:
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(x))
        else:
            raise CheckpointError(_refusal(x, at))


def _refusal(x: Any, at: str) -> str:
    t = type(x)
    hint = ""
    if t.__module__ == "numpy":
        hint = " (convert numpy values with torch.from_numpy(...) or .tolist())"
    elif isinstance(x, torch.Tensor):
        hint = " (tensor subclasses are refused on load: pass a plain tensor)"
    return (
        f"cannot checkpoint {at}: {t.__module__}.{t.__qualname__} is not a tensor or plain data "
        f"(None, bool, int, float, str, bytes, list, tuple, dict){hint}; a checkpoint holding "
        "it could only be loaded by unpickling arbitrary objects"
    )


StorageKey = tuple[Any, ...]
"""(device, data pointer, bytes) of a source storage: identifies it while it is alive."""


def snapshot(obj: Any, buffers: dict[StorageKey, torch.UntypedStorage] | None = None) -> Any:
    """A deep copy of ``obj`` with every tensor copied to CPU memory.

    Tensors sharing storage (tied weights, views) keep sharing it in the copy, as
    ``torch.save`` would record them: we copy each storage once and rebuild every view.

    ``buffers`` (optional) holds the CPU storages of an earlier snapshot, keyed by source
    storage. When the same source storage comes back (parameters and optimizer state are
    updated in place, so in steady state all of them do), we copy into the old buffer
    instead of allocating: fresh memory costs page faults, and that made the snapshot ~3x
    slower on our test machine. ``buffers`` is then replaced by the storages this snapshot
    uses. Pass it only when nothing still reads the earlier snapshot.
    """
    memo: dict[StorageKey, torch.UntypedStorage] = {}
    out = _copy(obj, memo, buffers or {})
    if buffers is not None:
        buffers.clear()
        buffers.update(memo)
    return out


def _copy(x: Any, memo: dict, reuse: dict) -> Any:
    t = type(x)
    if isinstance(x, torch.Tensor):
        return _copy_tensor(x, memo, reuse)
    if t in _MAPPINGS:
        out = t((k, _copy(v, memo, reuse)) for k, v in x.items())
        if hasattr(x, "_metadata"):  # module state dicts carry versions for load_state_dict
            out._metadata = _copy(x._metadata, memo, reuse)  # type: ignore[attr-defined]
        return out
    if t is torch.Size:
        return x
    if t in _SEQUENCES:
        return t(_copy(v, memo, reuse) for v in x)
    return x  # immutable plain data


def _copy_tensor(x: torch.Tensor, memo: dict, reuse: dict) -> torch.Tensor:
    x = x.detach()
    if x.layout != torch.strided or x.is_quantized or x.untyped_storage().nbytes() == 0:
        return x.to("cpu", copy=True)
    storage = x.untyped_storage()
    key = (storage.device, storage.data_ptr(), storage.nbytes())
    copy = memo.get(key)
    if copy is None:
        copy = reuse.get(key)
        if copy is not None:
            copy.copy_(storage)
        elif storage.device.type != "cpu":
            copy = storage.cpu()
        else:
            copy = storage.clone()
        memo[key] = copy
    out = torch.empty((0,), dtype=x.dtype)
    return out.set_(copy, x.storage_offset(), x.size(), x.stride())
