"""The final-layer activation probe: the RMS of the input to the model's last Linear layer,
every step, for the health tracker (guards/health.py) and the ``train/final_act_norm`` metric;
and the step's gradient norm and clipping, which measure the probe's tensor in the same call."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FinalActivationProbe:
    """RMS of the input to the model's last Linear layer (the LM head or classifier), kept
    on the device so that reading it costs no extra host sync. OPT-175B saw the final
    layer's activation norm spike before divergence (Zhang et al. 2022, section 2.5).

    The probe keeps the first micro-batch's input (``tensor``, a detached alias that autograd
    holds anyway until that micro-batch's backward); :func:`clip_and_norms` takes its L2 norm
    in the same ``_foreach_norm`` call as the gradients' (no separate reduction), and the
    division by sqrt(numel) that turns it into an RMS happens on the host after the step's
    sync (``rms``).

    No forward hook on an eager model: a module with any hook takes nn.Module's slower call
    path on every call (every micro-batch, every evaluation batch), although only the first
    call of a step is measured. ``arm()`` instead puts a one-shot ``forward`` in the layer's
    instance dict, which ``nn.Module.__call__`` finds before the class's: it measures, removes
    itself, and calls the layer's own forward. Under torch.compile (a changing ``forward``
    would make dynamo recompile) a permanent forward hook measures the armed call."""

    def __init__(self, model: nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.tensor: Tensor | None = None
        """The last measured input (detached), until the step takes it (``take``)."""
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
        self.tensor = x.data  # a detached alias without a dispatcher call: its norm records no graph
        self.numel = x.numel()
        self.armed = False  # first micro-batch only: cheap

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


def grads_of(params: list[Tensor]) -> list[Tensor]:
    """The gradients of ``params`` that exist."""
    return [p.grad for p in params if p.grad is not None]


def l2(x: Tensor) -> Tensor:
    """A tensor's L2 norm as a float32 scalar."""
    return torch.linalg.vector_norm(x) if x.dtype is torch.float32 else torch.linalg.vector_norm(x, dtype=torch.float32)


def one_kind(params: list[Tensor]) -> bool:
    """Whether ``params`` are plain Parameters (not DTensors) of one dtype and one device."""
    return len({(p.dtype, p.device) for p in params}) == 1 and all(type(p) is torch.nn.Parameter for p in params)


def clip_and_norms(params: list[Tensor], max_norm: float, act: Tensor | None,
                   uniform: bool) -> tuple[Tensor | None, Tensor | None]:
    """Clip the gradients of ``params`` to a total L2 norm of ``max_norm`` (none when <= 0)
    and return (their total norm before clipping, the L2 norm of ``act``), device scalars.

    The gradients' numbers are those of ``torch.nn.utils.clip_grad_norm_(foreach=True)`` bit
    for bit (the same ops: one ``_foreach_norm``, the norm of their stack, the clamped
    coefficient, one ``_foreach_mul_``). ``act`` (the probe's tensor) rides in the same
    ``_foreach_norm`` call when it has the gradients' dtype and device and is contiguous: a reduction
    dispatched on its own right after the backward took 24-30 us on the digits MLP on this
    CPU, measured in a run, against ~8 us when it follows another (cold caches). Otherwise,
    and for plain tensors other than parameters (a DTensor under FSDP2 goes through
    clip_grad_norm_), the two are measured apart. ``uniform``: :func:`one_kind` of ``params``."""
    grads = grads_of(params)
    if not grads:
        return None, None if act is None else l2(act)
    if not uniform:
        total = (torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True) if max_norm > 0
                 else torch.nn.utils.get_total_norm(grads, foreach=True))
        return total, None if act is None else l2(act)
    g0 = grads[0]
    # a non-contiguous tensor would send the whole list down the per-tensor path on a GPU
    folded = act is not None and act.dtype is g0.dtype and act.device == g0.device and act.is_contiguous()
    norms = torch._foreach_norm([*grads, act] if folded else grads, 2.0)
    total = torch.linalg.vector_norm(torch.stack(norms[:-1] if folded else norms), 2.0)
    if max_norm > 0:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    if act is None:
        return total, None
    return total, norms[-1] if folded else l2(act)
