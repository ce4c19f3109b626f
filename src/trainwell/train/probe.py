"""The final-layer activation probe: the RMS of the input to the model's last Linear layer,
every step, for the health tracker (guards/health.py) and the ``train/final_act_norm`` metric."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FinalActivationProbe:
    """RMS of the input to the model's last Linear layer (the LM head or classifier), kept
    on the device so that reading it costs no extra host sync. OPT-175B saw the final
    layer's activation norm spike before divergence (Zhang et al. 2022, section 2.5).

    One op a step (a float32 L2 norm of the first micro-batch's input); the division by
    sqrt(numel) that turns it into an RMS happens on the host after the step's sync (``rms``).

    No forward hook on an eager model: a module with any hook takes nn.Module's slower call
    path on every call (every micro-batch, every evaluation batch), although only the first
    call of a step is measured. ``arm()`` instead puts a one-shot ``forward`` in the layer's
    instance dict, which ``nn.Module.__call__`` finds before the class's: it measures, removes
    itself, and calls the layer's own forward. Under torch.compile (a changing ``forward``
    would make dynamo recompile) a permanent forward hook measures the armed call."""

    def __init__(self, model: nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.value: Tensor | None = None
        self.numel = 0
        self.armed = False
        self._layer = linears[-1] if linears else None
        hooked = self._layer is not None and hasattr(model, "_orig_mod")  # torch.compile's wrapper
        self._handle = self._layer.register_forward_hook(self._hook) if hooked else None

    def arm(self) -> None:
        """Measure the next call of the last Linear layer (the step's first micro-batch)."""
        layer = self._layer
        if layer is None:
            return
        self.armed = True
        if self._handle is None:
            layer.__dict__["forward"] = self._once

    def disarm(self) -> None:
        """After the step's forwards: a step that never called the layer leaves nothing armed."""
        self.armed = False
        if self._layer is not None:
            self._layer.__dict__.pop("forward", None)

    def _once(self, x: Tensor, *args: object, **kwargs: object) -> Tensor:
        layer = self._layer
        del layer.__dict__["forward"]
        self._measure(x)
        return type(layer).forward(layer, x, *args, **kwargs)

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self.armed:
            self._measure(inputs[0])

    def _measure(self, x: Tensor) -> None:
        x = x.data  # a detached alias without a dispatcher call: the norm records no graph
        if x.dtype is torch.float32:  # no dtype= argument: a cheaper dispatch for the common case
            self.value = torch.linalg.vector_norm(x)
        else:
            self.value = torch.linalg.vector_norm(x, dtype=torch.float32)
        self.numel = x.numel()
        self.armed = False  # first micro-batch only: cheap

    def rms(self, norm: float) -> float:
        return norm / math.sqrt(self.numel) if self.numel else 0.0

    def close(self) -> None:
        self.disarm()
        if self._handle is not None:
            self._handle.remove()
