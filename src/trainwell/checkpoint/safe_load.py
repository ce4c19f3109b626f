"""Read one checkpoint file without ever unpickling arbitrary objects.

A ``.pt`` file is a pickle; a crafted one runs code on ``torch.load(weights_only=False)``.
We only ever call ``torch.load(weights_only=True)`` (tensors and plain data) and turn its
refusal into a CheckpointError that says why, without torch's advice to retry unsafely.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from trainwell.errors import CheckpointError


def safe_torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True, map_location="cpu")`` with readable failures."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain data; loading it "
            f"could run code ({_culprit(e)}). Only load such a file if you made it yourself."
        ) from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as e:  # a damaged pickle fails in many ways (IndexError, KeyError...)
        raise CheckpointError(f"{path}: not a readable torch file ({e})") from None


def _culprit(e: pickle.UnpicklingError) -> str:
    """The line of torch's message that names the refused object."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln or ln.startswith("WeightsUnpickler"):
            return ln
    return lines[-1] if lines else type(e).__name__
