"""Quantisation after training, with a verdict: torchao's ``quantize_`` on a run's model,
judged on the task's evaluation split against the fp32 model's spread (``trainwell quantize``).

``quantize_run`` does the whole job; ``save_quantized`` / ``load_quantized`` write and read a
quantised model as safetensors (no pickle). See docs/quantization.md.
"""

from __future__ import annotations

from trainwell.quantize.errors import QuantizeError
from trainwell.quantize.methods import METHODS
from trainwell.quantize.run import quantize_run
from trainwell.quantize.store import load_quantized, read_quantized, save_quantized
from trainwell.quantize.verdict import VERDICT_FILE, Verdict, render_text

__all__ = [
    "METHODS",
    "VERDICT_FILE",
    "QuantizeError",
    "Verdict",
    "load_quantized",
    "quantize_run",
    "read_quantized",
    "render_text",
    "save_quantized",
]
