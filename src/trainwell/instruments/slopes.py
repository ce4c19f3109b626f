"""Per-sample slopes along one direction, from the training step itself: ``SlopeCapture``.

Alpha's far end (the step after a measurement) needs, for each sample i of the new batch
at θ_{t+1}, its loss and its slope along the last update d: g_iᵀd. The full capture
(capture.py) would keep every layer's input a and output gradient δ and then project
them; with d known before the step starts, each layer's share can be formed on the fly:

- Linear y = a Wᵀ + b: the per-sample gradient pairs δ_it with a_it (weight) and with 1
  (bias), so its share of g_iᵀd is Σ_t δ_it · (D_W a_it + D_b) = Σ_t δ_it · u_it with
  u = F.linear(a, D_W, D_b), formed by a forward hook;
- LayerNorm/RMSNorm with normalised input x̂: u = x̂ ⊙ D_w + D_b;
- Embedding: row x_it receives δ_it, so u_it = D[x_it] (zero at the padding index);

and a hook on the output's gradient adds Σ_t δ_it · u_it per sample. Every use of a layer
adds its own share (sequences, a layer called twice, tied weights), nothing is kept
beyond one (B,) sum, and no projection is left for after the step.

Used only where the full capture already ran and was trusted on this model (the same
layers, the same scope); the slopes are then the full capture's projections to float
rounding (tests check it).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainwell.instruments.capture import LayerHooks, differentiated
from trainwell.instruments.pieces import f32

if TYPE_CHECKING:
    from trainwell.instruments.capture import _Layer


class SlopeCapture(LayerHooks):
    """Hooks that sum δ_i · u_i per sample over the layers of one update (``arm`` before
    the first forward, ``close_micro`` after each micro-batch, ``take`` after the last)."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._dirs: list[tuple[Tensor | None, Tensor | None]] = []
        self._parts: list[Tensor] = []
        """Each hooked layer call's (B,) share of this micro-batch's slopes."""
        self._micro: list[tuple[Tensor, Tensor]] = []
        self.failure: str | None = None

    def arm(self, direction: dict[str, Tensor]) -> None:
        """Hook every layer for the slopes along ``direction`` (per parameter name)."""
        self.disarm()
        self._parts, self._micro, self.failure = [], [], None
        self._dirs = []
        for layer in self.layers:
            w = direction[layer.weight].float() if layer.weight is not None else None
            b = direction[layer.bias].float() if layer.bias is not None else None
            pad = getattr(layer.module, "padding_idx", None)
            if layer.kind == "embedding" and w is not None and pad is not None:
                w = w.clone()
                w[pad] = 0.0  # the padding row receives no gradient
            self._dirs.append((w, b))
        self._hook_all()

    def _forward(self, i: int, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if not differentiated(output):
            return
        layer, (w, b) = self.layers[i], self._dirs[i]
        x = inputs[0].detach()  # u has no graph: neither x nor the direction requires grad
        if layer.kind == "linear":
            if w is not None:
                u = F.linear(f32(x), w, b)
            else:  # a frozen weight: only the bias moves
                assert b is not None
                u = b.expand(*x.shape[:-1], b.shape[0])
        elif layer.kind == "norm":
            shape = module.normalized_shape  # type: ignore[attr-defined]
            if isinstance(module, nn.LayerNorm):
                xhat = F.layer_norm(f32(x), shape, None, None, module.eps)
            else:
                xhat = F.rms_norm(f32(x), shape, None, module.eps)  # type: ignore[arg-type]
            if w is None:
                u = torch.zeros_like(xhat) if b is None else b.expand_as(xhat)
            else:
                u = xhat * w if b is None else torch.addcmul(b, xhat, w)
        else:  # embedding
            assert w is not None
            u = F.embedding(x, w)
        output.register_hook(partial(self._backward, u))

    def _backward(self, u: Tensor, grad: Tensor) -> None:
        d = f32(grad.detach())
        if d.dim() == 2:  # (B, width): one row-wise dot
            self._parts.append(torch.linalg.vecdot(d, u))
        else:
            self._parts.append((d * u).reshape(d.shape[0], -1).sum(1))

    def close_micro(self, n: int, scale: Tensor | float, losses: Tensor) -> None:
        """After a micro-batch's backward: its ``n`` slopes times ``scale`` (δ to the gradient
        of each sample's mean loss, as the full capture's), with its per-sample ``losses``."""
        parts, self._parts = self._parts, []
        if self.failure is not None:
            return
        if not parts or any(p.shape[0] != n for p in parts):
            self.failure = "a layer's input is not batch-first" if parts else "no slopes for this micro-batch"
            return
        total = torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
        self._micro.append((losses, total.mul_(scale)))

    def take(self) -> tuple[Tensor, Tensor] | None:
        """(losses (B,), slopes (B,)) over all micro-batches, or None with ``failure`` set."""
        self.disarm()
        micro, self._micro = self._micro, []
        if self.failure is not None or not micro:
            self.failure = self.failure or "nothing was captured"
            return None
        if len(micro) == 1:
            return micro[0]
        return torch.cat([m[0] for m in micro]), torch.cat([m[1] for m in micro])
