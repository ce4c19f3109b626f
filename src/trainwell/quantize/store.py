"""A quantised model as a safetensors file (no pickle: safe to share and to load).

safetensors holds plain tensors only, and torchao's quantised weights are tensor subclasses
(``safetensors.save`` fails on them: "invalid python storage"). torchao's
``flatten_tensor_state_dict`` splits each into plain tensors (``lm_head._weight_qdata``,
``_weight_scale``, ...) plus a JSON description in the file's metadata, and
``unflatten_tensor_state_dict`` rebuilds them from an allow-list of its tensor types.

Tied weights are stored once: the other names are listed in ``trainwell.tied`` (alias ->
stored name), as in ``trainwell export``, and ``load_quantized`` ties them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from trainwell.checkpoint.fsio import write_atomic
from trainwell.errors import CheckpointError
from trainwell.quantize.methods import _quiet_import, torchao

TIED_KEY = "trainwell.tied"
PREFIX_KEY = "trainwell.prefix"
PREFIX = "model."
"""Put before every name when some name has no dot: torchao's unflatten splits each name
at its last dot into module and attribute, so a top-level ``weight`` cannot pass."""


def save_quantized(model: nn.Module, path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s state dict (quantised weights included) to ``path`` atomically."""
    torchao()
    with _quiet_import():
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    path = Path(path)
    state, tied = _unique(model.state_dict(keep_vars=True))  # keep_vars: tied names, one object
    prefix = PREFIX if any("." not in k for k in state) else ""
    state = {prefix + k: v for k, v in state.items()}
    with _quiet_import():
        tensors, meta = flatten_tensor_state_dict(state)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**meta, TIED_KEY: json.dumps(tied, sort_keys=True), PREFIX_KEY: prefix, "format": "pt"}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, safetensors_bytes(tensors, metadata=meta))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: could not write the quantised model ({e})") from e
    return path


def read_quantized(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict with torchao's tensors rebuilt and tied names restored, the file's metadata)."""
    torchao()
    with _quiet_import():
        from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        with _quiet_import():
            state, leftover = unflatten_tensor_state_dict(tensors, meta)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a quantised model written by trainwell quantize ({e})") from e
    if leftover:
        raise CheckpointError(f"{path}: tensors no weight claims: {', '.join(sorted(leftover))}")
    prefix = meta.get(PREFIX_KEY, "")
    state = {k[len(prefix):]: v for k, v in state.items()}
    for alias, stored in json.loads(meta.get(TIED_KEY, "{}")).items():
        state[alias] = state[stored]
    return state, meta


def load_quantized(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a file written by :func:`save_quantized` into ``model`` (built by the task, in
    fp32), in place: its quantised weights replace the layers' fp32 ones. Returns ``model``."""
    from trainwell.quantize.ties import tie_groups

    state, _ = read_quantized(path)
    groups = tie_groups(model)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not fit this model ({e})") from e
    for slots in groups:  # assign=True wraps each name in its own Parameter: one again
        first = getattr(model.get_submodule(slots[0][0]), slots[0][1])
        for mname, pname in slots[1:]:
            setattr(model.get_submodule(mname), pname, first)
    return model


def _unique(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(each tensor object once, under its first name; alias -> stored name)."""
    out: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[int, str] = {}
    for name, t in state.items():
        if id(t) in seen:
            tied[name] = seen[id(t)]
            continue
        seen[id(t)] = name
        out[name] = t.detach()
    return out, tied
