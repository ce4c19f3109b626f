"""Export weights to safetensors: a file any tool can read without unpickling anything.

safetensors refuses tensors that share memory. Tied weights (an LM head tied to the
embedding) are stored once under the first name in state-dict order; the other names are
listed in the metadata key ``trainwell.tied`` (alias -> stored name), and ``load_weights``
restores them. Tensors that overlap without being the same view are copied apart.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from trainwell.checkpoint.config import CheckpointConfig
from trainwell.checkpoint.fsio import fsync_dir
from trainwell.checkpoint.store import CheckpointInfo, CheckpointStore
from trainwell.errors import CheckpointError

TIED_KEY = "trainwell.tied"


def export_weights(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``state_dict`` as a safetensors file at ``path`` (atomically: tmp + rename).

    ``metadata`` adds string entries; keep it free of secrets and paths (the file travels)."""
    path = Path(path)
    tensors, tied = _dedupe(state_dict)
    meta = {"format": "pt", TIED_KEY: json.dumps(tied, sort_keys=True)}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=meta)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, SafetensorError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: could not write the safetensors export ({e})") from e


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an export back, tied names included (they share one tensor again)."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    for alias, stored in json.loads(meta.get(TIED_KEY, "{}")).items():
        tensors[alias] = tensors[stored]
    return tensors


def export_run(run_dir: str | Path, to: str | Path, ema: bool = False) -> Path:
    """Export the model (or EMA) weights of a run's newest valid checkpoint to safetensors.

    ``to`` is a file path, or an existing directory (the file is then named
    ``model-step-XXXXXXXX.safetensors`` or ``ema-step-...``). Returns the file written."""
    info, state = newest_weights(run_dir, ema)
    part = "ema" if ema else "model"
    to = Path(to)
    out = to / f"{part}-step-{info.step:08d}.safetensors" if to.is_dir() else to
    # Only what identifies the weights: no config, paths or run meta (the file is shared).
    export_weights(state, out, {"trainwell.step": str(info.step), "trainwell.weights": part})
    return out


def newest_weights(
    run_dir: str | Path, ema: bool = False, purpose: str = "export"
) -> tuple[CheckpointInfo, Mapping[str, torch.Tensor]]:
    """(the newest valid checkpoint, its model or EMA state dict) of a run directory; a
    CheckpointError that says why (and names ``purpose``) when there is none or it lacks the part."""
    run_dir = Path(run_dir)
    store = CheckpointStore(run_dir / "checkpoints", CheckpointConfig())
    if not store.root.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints folder ({store.root}); is this a run directory?")
    info, skipped = store.latest_valid()
    if info is None:
        why = "".join(f"\n  - {s}" for s in skipped) or " (the folder is empty)"
        raise CheckpointError(f"{store.root}: no valid checkpoint to {purpose}{why}")
    part = "ema" if ema else "model"
    if part not in info.parts and info.meta.get("sharded"):
        state = consolidated_part(store.root / info.meta["sharded"], part)
        if state is None:
            raise CheckpointError(f"{info.path}: its sharded weights hold no part {part!r}; {_missing(ema)}")
        return info, state
    if part not in info.parts:
        raise CheckpointError(
            f"{info.path}: no part {part!r} (parts: {', '.join(info.parts)}); {_missing(ema)}"
        )
    state = store.load(info, parts=[part])[part]
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{info.path / (part + '.pt')}: expected a state dict (name -> tensor), got {type(state).__name__}"
        )
    return info, state


def _missing(ema: bool) -> str:
    """Why a checkpoint lacks the weights asked for."""
    if ema:
        return "this run kept no EMA weights (train with ema.decay > 0, or export the raw model without ema)"
    return "the checkpoint has no model weights"


def consolidated_part(sharded_dir: Path, part: str) -> dict[str, torch.Tensor] | None:
    """One part (``model`` or ``ema``) of a sharded (FSDP2 / tensor-parallel) checkpoint as a
    plain state dict, read in this one process (None when the checkpoint lacks the part):
    DCP gathers the shards into one file (every part) in a temporary folder, of which the
    part asked for is kept."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        try:
            dcp_to_torch_save(str(sharded_dir), os.path.join(tmp, "full.pt"))
        except (OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{sharded_dir}: could not read the sharded checkpoint ({e})") from e
        return torch.load(os.path.join(tmp, "full.pt"), weights_only=True).get(part)


def _dedupe(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors safetensors accepts (contiguous, no shared memory) and the tied aliases."""
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen_views: dict[tuple[object, ...], str] = {}
    seen_storage: set[tuple[object, ...]] = set()
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(
                f"cannot export {name!r}: a {type(t).__name__}, not a tensor (safetensors holds tensors only)"
            )
        t = t.detach()
        storage = (t.device, t.untyped_storage().data_ptr())
        view = (*storage, t.dtype, t.storage_offset(), tuple(t.shape), t.stride())
        if t.untyped_storage().nbytes() > 0 and view in seen_views:
            tied[name] = seen_views[view]
            continue
        if t.untyped_storage().nbytes() > 0:
            seen_views[view] = name
        if storage in seen_storage or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)  # overlapping views: copy apart
        seen_storage.add(storage)
        tensors[name] = t.cpu()
    return tensors, tied
