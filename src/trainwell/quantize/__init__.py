"""Quantisation after training, with a verdict: torchao's ``quantize_`` on a run's model,
judged on the task's evaluation split against the fp32 model's spread (``trainwell quantize``).

``quantize_run`` does the whole job; ``save_quantized`` / ``load_quantized`` write and read a
quantised model as safetensors (no pickle). See docs/quantization.md.

Names are imported on first use (PEP 562), so that the CLI can list the methods without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

METHOD_NAMES = ("int8-weight", "int8-dynamic", "int4-weight")
"""The methods, in the order the verdict lists them (``methods.METHODS`` defines each)."""

_EXPORTS = {
    "METHODS": "trainwell.quantize.methods",
    "VERDICT_FILE": "trainwell.quantize.verdict",
    "QuantizeError": "trainwell.quantize.errors",
    "Verdict": "trainwell.quantize.verdict",
    "load_quantized": "trainwell.quantize.store",
    "quantize_run": "trainwell.quantize.run",
    "read_quantized": "trainwell.quantize.store",
    "render_text": "trainwell.quantize.verdict",
    "save_quantized": "trainwell.quantize.store",
}

__all__ = [  # noqa: F822 (resolved lazily by __getattr__)
    "METHODS",
    "METHOD_NAMES",
    "VERDICT_FILE",
    "QuantizeError",
    "Verdict",
    "load_quantized",
    "quantize_run",
    "read_quantized",
    "render_text",
    "save_quantized",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
