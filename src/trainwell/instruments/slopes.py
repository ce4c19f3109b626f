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

if TYPE_CHECKING:
    from trainwell.instruments.capture import _Layer


class SlopeCapture:
    """Hooks that sum δ_i · u_i per sample over the layers of one update (``arm`` before
    the first forward, ``close_micro`` after each micro-batch, ``take`` after the last)."""

    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._dirs: list[tuple[Tensor | None, Tensor | None]] = []
        self._acc: Tensor | None = None
        self._micro: list[tuple[Tensor, Tensor]] = []
        self.failure: str | None = None

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self, direction: dict[str, Tensor]) -> None:
        """Hook every layer for the slopes along ``direction`` (per parameter name)."""
        self.disarm()
        self._acc, self._micro, self.failure = None, [], None
        self._dirs = []
        for layer in self.layers:
            w = direction[layer.weight].float() if layer.weight is not None else None
            b = direction[layer.bias].float() if layer.bias is not None else None
            pad = getattr(layer.module, "padding_idx", None)
            if layer.kind == "embedding" and w is not None and pad is not None:
                w = w.clone()
                w[pad] = 0.0  # the padding row receives no gradient
            self._dirs.append((w, b))
        self._handles = [
            layer.module.register_forward_hook(partial(self._forward, i))
            for i, layer in enumerate(self.layers)
        ]

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _forward(self, i: int, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if not (torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad):
            return
        layer, (w, b) = self.layers[i], self._dirs[i]
        x = inputs[0].detach()
        with torch.no_grad():
            if layer.kind == "linear":
                xf = x.float()
                if w is not None:
                    u = F.linear(xf, w, b)
                else:  # a frozen weight: only the bias moves
                    assert b is not None
                    u = b.expand(*xf.shape[:-1], b.shape[0])
            elif layer.kind == "norm":
                shape = module.normalized_shape  # type: ignore[attr-defined]
                if isinstance(module, nn.LayerNorm):
                    xhat = F.layer_norm(x.float(), shape, None, None, module.eps)
                else:
                    xhat = F.rms_norm(x.float(), shape, None, module.eps)  # type: ignore[arg-type]
                u = xhat * w if w is not None else torch.zeros_like(xhat)
                if b is not None:
                    u = u + b
            else:  # embedding
                assert w is not None
                u = F.embedding(x, w)
        output.register_hook(partial(self._backward, u))

    def _backward(self, u: Tensor, grad: Tensor) -> None:
        d = grad.detach()
        if d.dtype is not torch.float32:
            d = d.float()
        s = (d * u).reshape(d.shape[0], -1).sum(1) if d.dim() > 1 else d * u
        self._acc = s if self._acc is None else self._acc + s

    def close_micro(self, n: int, scale: Tensor | float, losses: Tensor) -> None:
        """After a micro-batch's backward: its ``n`` slopes times ``scale`` (δ to the gradient
        of each sample's mean loss, as the full capture's), with its per-sample ``losses``."""
        acc, self._acc = self._acc, None
        if self.failure is not None:
            return
        if acc is None or acc.shape[0] != n:
            self.failure = "no slopes for this micro-batch" if acc is None else "a layer's input is not batch-first"
            return
        self._micro.append((losses, acc * scale))

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
