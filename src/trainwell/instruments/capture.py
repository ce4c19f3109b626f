"""Per-sample gradients from the training step's own backward (``BackwardCapture``).

A Linear layer y = a Wᵀ + b has per-sample gradients ∂ℓ_i/∂W = Σ_t δ_it a_itᵀ and
∂ℓ_i/∂b = Σ_t δ_it, where a is the layer's input and δ = ∂ℓ/∂y the gradient arriving at
its output (Goodfellow 2015, "Efficient per-example gradient computations"; the trick
behind BackPACK and Opacus). The training step computes a and δ anyway: on a due step a
forward hook keeps the input and a tensor hook on the output keeps δ, so per-sample
gradients cost a few matrix products instead of a second, vmapped backward pass
(functional.py), which on a small CPU model is 5-10 training steps' worth of time.

LayerNorm/RMSNorm (∂ℓ_i/∂w = Σ_t δ_it ⊙ x̂_it with x̂ the normalised input, recomputed in
the hook) and Embedding (row x_it of the table receives δ_it) are captured the same way.

Scope, checked rather than assumed: every trainable parameter must belong to one of these
layers (MLPs, transformers of Linear + norm + embedding); other models (convolutions,
BatchNorm, custom parameters) keep the torch.func path. On the first captured step the sum of the captured per-sample gradients
is compared with the gradient the optimizer received; any mismatch (a weight also used
outside its module, weight tying, a layer whose input is not batch-first) turns the
capture off for the run, with a note, and the torch.func path takes over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainwell.instruments.persample import PerSampleGrads
from trainwell.instruments.pieces import Dense, Outer, Piece, f32

AGREEMENT = 1e-3
"""Largest relative difference between the captured and the optimizer's gradient (both
normalised) for the capture to be trusted: float32 sums in another order differ by ~1e-6."""
AGREEMENT_LOW = 3e-2
"""The same under bf16/fp16 autocast, whose output gradients carry 8 or 11 significant bits
(a missed layer or a reused weight is off by far more: tens of percent)."""


NO_PER_SAMPLE = "the task gives no per-sample losses (LossOutput.per_sample)"


class CaptureError(RuntimeError):
    """What the capture could not handle on this model (the torch.func path then runs)."""


@dataclass
class _Layer:
    module: nn.Module
    kind: str
    """"linear", "norm" (LayerNorm, RMSNorm) or "embedding"."""
    weight: str | None
    bias: str | None


@dataclass
class Captured:
    """One update's per-sample gradients and losses, from the training backward."""

    grads: PerSampleGrads
    losses: Tensor
    """(B,) each sample's mean loss (LossOutput.per_sample / targets per sample)."""


EMBEDDING_BUDGET = 1 << 24
"""Largest B x vocabulary x width of an embedding's dense per-sample gradients (64 MiB)."""


def _kind(m: nn.Module) -> str | None:
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.LayerNorm | nn.RMSNorm) and m.elementwise_affine:
        return "norm"
    if isinstance(m, nn.Embedding) and m.max_norm is None:
        return "embedding"
    return None


class LayerHooks:
    """Forward hooks (``_forward``) on every layer of ``layers``, on and off together."""

    layers: list[_Layer]
    _handles: list[Any]

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def _hook_all(self) -> None:
        self._handles = [
            layer.module.register_forward_hook(partial(self._forward, i))  # type: ignore[attr-defined]
            for i, layer in enumerate(self.layers)
        ]

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def differentiated(output: Any) -> bool:
    """Whether a layer's output takes part in a backward (not evaluation, not no_grad)."""
    return torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad


class BackwardCapture(LayerHooks):
    """Hooks on the Linear, LayerNorm/RMSNorm and Embedding layers, armed only on due
    steps (``arm``); ``close_micro`` after each micro-batch's backward; ``take`` after
    the last one."""

    def __init__(self, model: nn.Module, param_names: list[str]) -> None:
        self.param_names = param_names
        self.why_not: str | None = None
        """Why this model cannot be captured (None: it can)."""
        self.trusted = False
        """The first captured step agreed with the optimizer's gradient."""
        by_id = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
        self.layers: list[_Layer] = []
        owned: set[str] = set()
        for m in model.modules():
            kind = _kind(m)
            if kind is None:
                continue
            w, b = getattr(m, "weight", None), getattr(m, "bias", None)
            layer = _Layer(m, kind, by_id.get(id(w)) if w is not None else None,
                           by_id.get(id(b)) if b is not None else None)
            if layer.weight is None and layer.bias is None:
                continue  # frozen
            self.layers.append(layer)
            owned.update(n for n in (layer.weight, layer.bias) if n is not None)
        others = [n for n in param_names if n not in owned]
        if others:
            shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
            self.why_not = f"parameters outside Linear, norm and embedding layers ({shown})"
        self._handles: list[Any] = []
        self._calls: list[list[list[Tensor | None]]] = []
        self._micro: list[tuple[list[tuple[Tensor, Tensor]], Tensor]] = []
        self.failure: str | None = None
        self.low_precision = False
        """Some output gradient arrived in bf16 or fp16 (autocast)."""

    def arm(self) -> None:
        self.disarm()
        self._micro, self.failure = [], None
        self._calls = [[] for _ in self.layers]
        self._hook_all()

    def _forward(self, i: int, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if not differentiated(output):
            return  # evaluation, or a forward nobody differentiates
        x = inputs[0].detach()
        kind = self.layers[i].kind
        if kind == "norm":  # what the weight multiplies: the normalised input
            shape = module.normalized_shape
            if isinstance(module, nn.LayerNorm):
                x = F.layer_norm(x.float(), shape, None, None, module.eps)
            else:
                x = F.rms_norm(x.float(), shape, None, module.eps)
        slot: list[Tensor | None] = [x, None]
        self._calls[i].append(slot)
        output.register_hook(partial(_keep, slot))

    def close_micro(
        self, n: int, count: Tensor | float, grad_factor: Tensor | float, per_sample: Tensor | None
    ) -> None:
        """After micro-batch backward: ``n`` samples, ``count`` targets, ``.grad`` scaled by
        ``grad_factor`` (loss scale / normaliser), ``per_sample`` the task's per-sample loss
        sums (LossOutput.per_sample). Converts δ to the gradient of each sample's mean
        loss: δ_i · n / (grad_factor · count), assuming count / n targets per sample."""
        calls, self._calls = self._calls, [[] for _ in self.layers]
        if self.failure is not None:
            return
        if per_sample is None:
            self.failure = NO_PER_SAMPLE
            return
        scale, losses = micro_scale(n, count, grad_factor, per_sample)
        layers: list[tuple[Tensor, Tensor]] = []
        plain = []  # one call without a sequence axis (the common case): scaled together below
        for i, (layer, slots) in enumerate(zip(self.layers, calls, strict=True)):
            used = [(x, d) for x, d in slots if d is not None]
            for x, d in used:
                if x.shape[0] != n or d.shape[0] != n:
                    self.failure = f"a {type(layer.module).__name__} layer's input is not batch-first"
                    return
                self.low_precision |= d.dtype in (torch.bfloat16, torch.float16)
            if len(used) == 1 and _plain(layer, *used[0]):
                plain.append(i)
                layers.append((f32(used[0][0]), f32(used[0][1])))
            else:
                layers.append(_join(layer, used, n, scale))
        if plain:  # one fused multiply for every such layer's δ
            scaled = torch._foreach_mul([layers[i][1] for i in plain], scale)
            for i, d in zip(plain, scaled, strict=True):
                layers[i] = (layers[i][0], d)
        self._micro.append((layers, losses))

    def take(self) -> Captured | None:
        """The update's per-sample gradients (all micro-batches), or None with ``failure`` set."""
        self.disarm()
        micro, self._micro = self._micro, []
        if self.failure is not None or not micro:
            self.failure = self.failure or "nothing was captured"
            return None
        found: dict[str, list[Piece]] = {}
        for i, layer in enumerate(self.layers):
            try:
                parts = _pieces(layer, [m[0][i] for m in micro])
            except CaptureError as e:
                self.failure = str(e)
                return None
            for piece in parts:
                found.setdefault(piece.name, []).append(piece)
        pieces: list[Piece] = []
        for name in self.param_names:
            got = found[name]  # several: a tied weight (e.g. embedding and LM head)
            pieces.append(got[0] if len(got) == 1 else Dense(name, sum(p.dense() for p in got)))
        losses = torch.cat([m[1] for m in micro])
        return Captured(PerSampleGrads(pieces, int(losses.shape[0]), "backward"), losses)

    def take_trusted(self, live: dict[str, Tensor | None]) -> tuple[Captured | None, str | None]:
        """``take``, checked on the first captured step against the optimizer's gradient
        ``live``: (per-sample gradients or None for this step, a problem that should turn
        the capture off for the run, with the note to show, or None)."""
        captured = self.take()
        if captured is None or self.trusted:
            return captured, None
        if any(g is None for g in live.values()):
            return None, None
        agrees = self.verify(captured, live)  # type: ignore[arg-type]
        if agrees is False:
            return None, (
                "per-sample gradients: the layers' captured gradients do not add up to the model's "
                "gradient (a weight used outside its layer?); using torch.func (vmap) instead"
            )
        self.trusted = agrees is True
        return (captured if self.trusted else None), None

    def verify(self, captured: Captured, live: dict[str, Tensor]) -> bool | None:
        """Whether the captured gradients sum to the optimizer's gradient ``live`` (up to
        the clipping factor): True, False (the capture misses part of the gradient), or
        None when this step cannot tell (a zero or non-finite gradient)."""
        mean = captured.grads.mean()
        names = self.param_names
        ours = torch.cat([mean[n].reshape(-1) for n in names])
        theirs = torch.cat([live[n].reshape(-1).float() for n in names])
        a, b = torch.linalg.vector_norm(ours), torch.linalg.vector_norm(theirs)
        if not (torch.isfinite(a) and torch.isfinite(b)) or float(a) == 0.0 or float(b) == 0.0:
            return None
        limit = AGREEMENT_LOW if self.low_precision else AGREEMENT
        return float(torch.linalg.vector_norm(ours / a - theirs / b)) <= limit


def micro_scale(
    n: int, count: Tensor | float, grad_factor: Tensor | float, per_sample: Tensor
) -> tuple[Tensor | float, Tensor]:
    """(scale, losses) of a micro-batch of ``n`` samples and ``count`` targets whose
    ``.grad`` carries ``grad_factor``: ``scale`` turns an output gradient δ into the gradient
    of each sample's mean loss, δ · n / (grad_factor · count), assuming count / n targets
    per sample; ``losses`` are the samples' mean losses."""
    if isinstance(count, Tensor) and count.device.type == "cpu":
        count = float(count)  # no device op on a CPU (a tensor elsewhere: no host sync)
    if isinstance(grad_factor, Tensor) and grad_factor.device.type == "cpu":
        grad_factor = float(grad_factor)
    per_target = count.detach().float() / n if isinstance(count, Tensor) else float(count) / n
    losses = per_sample.detach().float()
    if not (isinstance(per_target, float) and per_target == 1.0):
        losses = losses / per_target
    return 1.0 / (grad_factor * per_target), losses


def _widths(layer: _Layer) -> tuple[int, int]:
    """(output width, input width; 0 for an embedding's indices)."""
    m = layer.module
    if layer.kind == "embedding":
        return m.weight.shape[1], 0
    if layer.kind == "linear":
        return m.weight.shape[0], m.weight.shape[1]
    width = math.prod(m.normalized_shape)
    return width, width


def _plain(layer: _Layer, x: Tensor, d: Tensor) -> bool:
    """A single call on a batch without a sequence axis: (n, in) and (n, out) as they are."""
    if layer.kind == "embedding" or x.dim() != 2 or d.dim() != 2:
        return False
    width, x_dims = _widths(layer)
    return x.shape[1] == x_dims and d.shape[1] == width


def _join(layer: _Layer, used: list[tuple[Tensor, Tensor]], n: int, scale: Tensor | float) -> tuple[Tensor, Tensor]:
    """One micro-batch's calls of a layer, other than a single plain one (``_plain``), as
    input and output gradient (n, T, ·): the calls of a layer used several times side by
    side along T (their gradients add up)."""
    m = layer.module
    width, x_dims = _widths(layer)
    if not used:  # the layer took no part in this loss: zero gradient
        x = m.weight.new_zeros((n, 0, x_dims) if x_dims else (n, 0), dtype=torch.float32)
        return (x.long() if not x_dims else x), m.weight.new_zeros(n, 0, width, dtype=torch.float32)
    if layer.kind == "embedding":
        x = torch.cat([x.reshape(n, -1) for x, _ in used], 1)  # (n, T) indices
    else:
        x = f32(torch.cat([x.reshape(n, -1, x_dims) for x, _ in used], 1))  # (n, T, in)
    d = f32(torch.cat([d.reshape(n, -1, width) for _, d in used], 1))  # (n, T, out)
    return x, d * scale


def _cat(ts: list[Tensor]) -> Tensor:
    return ts[0] if len(ts) == 1 else torch.cat(ts)


def _pieces(layer: _Layer, micro: list[tuple[Tensor, Tensor]]) -> list[Piece]:
    """The layer's per-sample gradient pieces over all micro-batches."""
    xs, ds = [x for x, _ in micro], [d for _, d in micro]
    flat = all(d.dim() == 2 for d in ds)  # no sequence axis: (n, in), (n, out)
    if not flat:
        xs = [x.unsqueeze(1) if x.dim() == 2 and layer.kind != "embedding" else x for x in xs]
        ds = [d.unsqueeze(1) if d.dim() == 2 else d for d in ds]
    out: list[Piece] = []
    w, b = layer.weight, layer.bias
    m = layer.module
    if layer.kind == "linear":
        if w is not None:
            if flat:  # keep the factors
                out.append(Outer(w, _cat(ds), _cat(xs)))
            else:  # a sequence axis: Σ_t δ_t a_tᵀ per sample, (B, out, in)
                out.append(Dense(w, _cat([torch.einsum("bto,bti->boi", d, x) for x, d in zip(xs, ds, strict=True)])))
    elif layer.kind == "norm":
        shape = tuple(m.normalized_shape)
        if w is not None:  # Σ_t δ_t ⊙ x̂_t
            g = _cat([d * x if flat else (d * x).sum(1) for x, d in zip(xs, ds, strict=True)])
            out.append(Dense(w, g.view(-1, *shape)))
        if b is not None:
            out.append(Dense(b, _cat([d if flat else d.sum(1) for d in ds]).view(-1, *shape)))
        return out
    else:  # embedding: row x_t of the table receives δ_t
        vocab, width = m.weight.shape
        n = sum(x.shape[0] for x in xs)
        if n * vocab * width > EMBEDDING_BUDGET:
            raise CaptureError(f"an embedding's per-sample gradients exceed {EMBEDDING_BUDGET} floats")
        parts = []
        for x, d in zip(xs, ds, strict=True):
            g = d.new_zeros(x.shape[0], vocab, width)
            g.scatter_add_(1, x.unsqueeze(-1).expand(-1, -1, width), d)
            if m.padding_idx is not None:
                g[:, m.padding_idx] = 0.0
            parts.append(g)
        if w is not None:
            out.append(Dense(w, _cat(parts)))
        return out
    if b is not None:
        out.append(Dense(b, _cat([d if flat else d.sum(1) for d in ds])))
    return out


def _keep(slot: list[Tensor | None], grad: Tensor) -> None:
    slot[1] = grad.detach()
