"""Numeric precision: fp32, bf16 autocast, or fp16 autocast with dynamic loss scaling.

Parameters (the master weights) always stay fp32; autocast runs matmuls in low precision
and keeps reductions such as norms and softmax in fp32 (PyTorch's autocast op lists).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from trainwell.errors import ConfigError

_NO_AUTOCAST = contextlib.nullcontext()
"""fp32 enters nothing; a nullcontext holds no state, so one serves every micro-batch."""


@dataclass
class Precision:
    name: str
    """fp32, bf16 or fp16 (resolved from 'auto')."""
    device: torch.device
    scaler: torch.amp.GradScaler | None

    def __post_init__(self) -> None:
        # read for every micro-batch: looked up once, not from a dict at every call
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def dtype(self) -> torch.dtype | None:
        return self._dtype

    def autocast(self) -> Any:
        if self._dtype is None:
            return _NO_AUTOCAST
        return torch.autocast(device_type=self.device.type, dtype=self._dtype)

    def scale_tensor(self) -> torch.Tensor | None:
        """The loss scale as a device tensor (no host sync), or None without fp16."""
        if self.scaler is None:
            return None
        # GradScaler.get_scale() syncs with the host; the step reads the scale together with
        # the loss and grad norm in its single sync instead. _scale exists once scale() ran.
        return getattr(self.scaler, "_scale", None)


def resolve_precision(name: str, device: torch.device) -> Precision:
    if name == "auto":
        # bf16 where the hardware is built for it; on CPU bf16 autocast is usually slower
        # than fp32 and its rounding costs accuracy, so fp32.
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            name = "bf16"
        else:
            name = "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision: 'bf16' is not supported by this GPU; use 'fp16' or 'fp32'")
    scaler = None
    if name == "fp16":
        # dynamic loss scaling: start at 2**16, halve on overflow, double after 2000 clean steps
        # (PyTorch defaults, as used for years in fp16 training; OPT's 'loss scaler').
        scaler = torch.amp.GradScaler(device.type)
    return Precision(name=name, device=device, scaler=scaler)
