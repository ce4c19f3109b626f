"""The final-layer activation probe: the RMS of the input to the model's last Linear layer,
every step, for the health tracker (guards/health.py) and the ``train/final_act_norm`` metric."""

from __future__ import annotations

import math

from torch import Tensor, nn


class FinalActivationProbe:
    """RMS of the input to the model's last Linear layer (the LM head or classifier), kept
    on the device so that reading it costs no extra host sync. OPT-175B saw the final
    layer's activation norm spike before divergence (Zhang et al. 2022, section 2.5).

    The probe keeps the first micro-batch's input (``tensor``, a detached alias that autograd
    holds anyway until that micro-batch's backward); the step reads its L2 norm in its one
    host sync, and the division by sqrt(numel) that turns it into an RMS happens on the host
    (``rms``)."""

    def __init__(self, model: nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.tensor: Tensor | None = None
        """The last measured input (detached), until the step takes it (``take``)."""
        self.numel = 0
        self.armed = False
        layer = linears[-1] if linears else None
        self._handle = layer.register_forward_hook(self._hook) if layer is not None else None

    def arm(self) -> None:
        """Measure the next call of the last Linear layer (the step's first micro-batch)."""
        self.armed = self._handle is not None

    def disarm(self) -> None:
        """After the step's forwards: a step that never called the layer leaves nothing armed."""
        self.armed = False

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self.armed:
            self.tensor = inputs[0].detach()  # its norm records no graph
            self.numel = inputs[0].numel()
            self.armed = False  # the first micro-batch only

    def take(self) -> Tensor | None:
        """The measured tensor of this step (None if the layer was not called); forgets it."""
        x, self.tensor = self.tensor, None
        return x

    def rms(self, norm: float) -> float:
        return norm / math.sqrt(self.numel) if self.numel else 0.0

    def close(self) -> None:
        self.disarm()
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
