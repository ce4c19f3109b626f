"""Activations: per-layer statistics, dead ReLUs, saturation, the final layer's input and
the largest attention logit.

Nothing is hooked on ordinary steps. On a due step the recorder's forward hooks are
attached for the training step's first micro-batch (θ_t, the update's own batch: no extra
forward), so the hot path of other steps never pays for a hook call. Where the loop does
not offer its forward (tests, distributed runs) and for attention logits, the recorder
re-runs one forward of the batch at θ_t before the optimizer step (no grad, cloned
buffers, forked RNG).

Attention logits are measured through ``F.scaled_dot_product_attention``: during that
forward a ``TorchFunctionMode`` sees every call, recomputes q·kᵀ·scale under the call's
mask (causal or given) and keeps the maximum per calling module. Models that compute
attention by hand (``softmax(q @ k.T)``) are not seen; the runner then notes it when the
model has modules named like attention.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from trainwell.instruments.base import ACTIVATIONS, ATTENTION, FINAL_INPUT, Context, Metrics, key
from trainwell.instruments.functional import FunctionalModel

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
)  # fmt: skip


def kind_of(module: nn.Module) -> str:
    """'relu' (can die), 'sigmoid' / 'tanh' (can saturate), or 'other'."""
    if isinstance(module, nn.ReLU | nn.ReLU6):
        return "relu"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Tanh):
        return "tanh"
    return "other"


def final_layer(model: nn.Module) -> nn.Module | None:
    """``model.final_layer`` when the model names it (trainwell's models do), else its last
    nn.Linear in registration order (the classifier or LM head of most models)."""
    named = getattr(model, "final_layer", None)
    if isinstance(named, nn.Module):
        return named
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


@dataclass
class Activations:
    """What one recorded forward saw."""

    outputs: dict[str, Tensor] = field(default_factory=dict)
    """activation module name -> its output (a second call of one module: ``name#2``)."""
    kinds: dict[str, str] = field(default_factory=dict)
    final_input: Tensor | None = None
    attention: dict[str, Tensor] = field(default_factory=dict)
    """module name -> largest attention logit of its scaled_dot_product_attention calls."""
    attention_like: list[str] = field(default_factory=list)
    """Modules named like attention (to explain a missing measurement)."""


class Layout:
    """What the recorder hooks, found once per model (module lists do not change)."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = list(model.named_modules())
        self.activations = [
            (n, m, kind_of(m)) for n, m in self.modules if isinstance(m, ACTIVATION_TYPES)
        ]
        self.final = final_layer(model)
        self.attention_like = [n for n, m in self.modules if _looks_like_attention(n, m)]


class Recorder:
    """Forward hooks that keep what the activation instruments read, attached for one
    forward: the training step's own first micro-batch (``attach`` before it, ``detach``
    after it; free) or a forward of its own (``record``)."""

    def __init__(self, layout: Layout, *, outputs: bool, final: bool) -> None:
        self.layout, self.outputs, self.final = layout, outputs, final
        self.acts = Activations()
        self._handles: list[Any] = []

    def attach(self) -> Recorder:
        acts = self.acts

        def keep(name: str, kind: str) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                slot, i = name, 1
                while slot in acts.outputs:
                    i += 1
                    slot = f"{name}#{i}"
                acts.outputs[slot] = output.detach()
                acts.kinds[slot] = kind

            return hook

        def keep_input(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            acts.final_input = inputs[0].detach()

        if self.outputs:
            for n, m, kind in self.layout.activations:
                self._handles.append(m.register_forward_hook(keep(n, kind)))
        if self.final and self.layout.final is not None:
            self._handles.append(self.layout.final.register_forward_pre_hook(keep_input))
        return self

    def detach(self) -> Activations:
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.acts


def record(
    fn: FunctionalModel,
    params: dict[str, Tensor] | None,
    batch: Any,
    layout: Layout,
    *,
    outputs: bool,
    final: bool,
    attention: bool,
) -> Activations:
    """One forward of ``batch`` at ``params`` (None: the live ones) with temporary hooks;
    returns what they saw."""
    recorder = Recorder(layout, outputs=outputs, final=final)
    acts = recorder.acts
    handles: list[Any] = []
    stack: list[str] = []
    if attention:
        acts.attention_like = list(layout.attention_like)

        def leave(*_: Any) -> None:
            stack.pop()  # and return None: a forward hook's return value replaces the output

        for n, m in layout.modules:
            handles.append(m.register_forward_pre_hook(_enter(stack, n)))
            handles.append(m.register_forward_hook(leave))
    probe = _AttentionProbe(acts.attention, stack) if attention else nullcontext()
    recorder.attach()
    try:
        with torch.no_grad(), probe:
            fn.loss_output(params, batch)
    finally:
        recorder.detach()
        for h in handles:
            h.remove()
    return acts


def _enter(stack: list[str], name: str) -> Callable[..., None]:
    def hook(*_: Any) -> None:
        stack.append(name)

    return hook


def _looks_like_attention(name: str, module: nn.Module) -> bool:
    text = f"{name.rsplit('.', 1)[-1]} {type(module).__name__}".lower()
    return "attn" in text or "attention" in text


class _AttentionProbe(TorchFunctionMode):
    """Sees each F.scaled_dot_product_attention call and records its largest logit."""

    def __init__(self, out: dict[str, Tensor], stack: list[str]) -> None:
        super().__init__()
        self.out, self.stack = out, stack

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            where = self.stack[-1] if self.stack else "model"
            value = max_attention_logit(*args, **kwargs)
            prev = self.out.get(where)
            self.out[where] = value if prev is None else torch.maximum(prev, value)
        return func(*args, **kwargs)


def max_attention_logit(
    query: Tensor,
    key_: Tensor,
    value: Tensor | None = None,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """max of q·kᵀ·scale over the positions the call attends to; q (..., L, E), k (..., S, E)."""
    q, k = query.float(), key_.float()
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    logits = (q @ k.transpose(-2, -1)) * (
        scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    )
    L, S = logits.shape[-2:]
    if is_causal:
        allowed = torch.ones(L, S, dtype=torch.bool, device=logits.device).tril()
        logits = logits.masked_fill(~allowed, -torch.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, -torch.inf)
        else:
            logits = logits + attn_mask.float()
    return logits.amax()


# ---------------------------------------------------------------- instruments


class ActivationStats:
    """Per activation module (ReLU, GELU, tanh, sigmoid, ...): mean and standard deviation of
    its output; for ReLUs the fraction of dead units (never positive over the whole batch);
    for sigmoid and tanh the saturated fraction (output within ``saturation_eps`` of an
    asymptote, where the local gradient is below ~eps). Also the pooled
    ``inst/act_dead_frac`` and ``inst/act_saturated_frac`` over all such modules.

    A unit is a feature: dim 1 of (B, C) and (B, C, H, W) outputs, the last dim of
    (B, T, C) sequence outputs (a conv1d's (B, C, L) is read as a sequence).

    Needs: activations (hooks on the training forward of due steps; one extra forward
    where the loop does not offer it).
    Reading: a dead fraction that grows means ReLUs die (LR too high, or a bad init);
    saturated sigmoid/tanh units pass almost no gradient (vanishing gradients, Cockpit's
    sigmoid 3c3d); a std that grows layer after layer means activations explode.
    """

    name = "activations"
    needs = frozenset({ACTIVATIONS})

    def __init__(self, saturation_eps: float = 0.01) -> None:
        self.eps = saturation_eps

    def measure(self, ctx: Context) -> Metrics:
        acts = ctx.activations
        assert acts is not None
        out: Metrics = {}
        dead, units, sat, elems = [], 0, [], 0
        for name, y in acts.outputs.items():
            y = y.float()
            out[key("act_mean", name)] = y.mean()
            out[key("act_std", name)] = (
                y.std() if y.numel() > 1 else torch.zeros((), device=y.device)
            )
            kind = acts.kinds[name]
            if kind == "relu":
                alive = _per_unit_any(y > 0)  # (units,)
                n_dead = (~alive).sum()
                out[key("act_dead_frac", name)] = n_dead / alive.numel()
                dead.append(n_dead)
                units += alive.numel()
            elif kind in ("sigmoid", "tanh"):
                far = (
                    (y < self.eps) | (y > 1 - self.eps)
                    if kind == "sigmoid"
                    else y.abs() > 1 - self.eps
                )
                n_sat = far.sum()
                out[key("act_saturated_frac", name)] = n_sat / y.numel()
                sat.append(n_sat)
                elems += y.numel()
        if units:
            out[key("act_dead_frac")] = torch.stack(dead).sum() / units
        if elems:
            out[key("act_saturated_frac")] = torch.stack(sat).sum() / elems
        return out


def _per_unit_any(mask: Tensor) -> Tensor:
    """Whether each unit (feature) is true anywhere in the batch; see ActivationStats."""
    if mask.ndim <= 1:
        return mask.reshape(-1)
    unit_dim = mask.ndim - 1 if mask.ndim == 3 else 1
    return mask.movedim(unit_dim, 0).reshape(mask.shape[unit_dim], -1).any(dim=1)


class FinalActivation:
    """RMS of the input to the model's final layer, sqrt(mean(x²)) over the batch
    (``inst/final_act_rms``): the quantity OPT-175B watched, whose steady growth preceded
    its divergences (Zhang et al. 2022, logbook). The loop's per-step probe reads the same
    quantity on the first micro-batch; this one measures the whole batch at θ_t.

    Needs: final_input (a hook on the training forward of due steps; the final layer is
    ``model.final_layer`` or the last nn.Linear).
    Reading: roughly constant in a healthy run; a steady rise is an early warning of
    divergence (consider QK-norm, a lower LR or more weight decay on the last blocks).
    """

    name = "final_act"
    needs = frozenset({FINAL_INPUT})

    def measure(self, ctx: Context) -> Metrics:
        acts = ctx.activations
        if acts is None or acts.final_input is None:
            ctx.notes.append(
                "final_act: the model has no final layer to watch (no model.final_layer, no nn.Linear)"
            )
            return {}
        return {key("final_act_rms"): acts.final_input.float().square().mean().sqrt()}


class AttentionLogits:
    """The largest attention logit max(q·kᵀ/√d) over the positions attended to, per
    attention module (``inst/attn_logit_max/<module>``) and overall
    (``inst/attn_logit_max``), measured through F.scaled_dot_product_attention (see the
    module docstring).

    Needs: attention (one extra forward on due steps plus one q·kᵀ per attention call;
    none once a forward showed that the model makes no attention call).
    Reading: logits that keep growing make the softmax one-hot and precede loss spikes
    (Dehghani et al. 2023 traced ViT-22B divergences to them); QK-norm or a lower LR
    keeps them bounded. Values of a few tens are normal; hundreds are a warning.
    """

    name = "attention"
    needs = frozenset({ATTENTION})

    def measure(self, ctx: Context) -> Metrics:
        acts = ctx.activations
        assert acts is not None
        if not acts.attention:
            if acts.attention_like:
                ctx.notes.append(
                    "attention: modules named like attention "
                    f"({', '.join(acts.attention_like[:3])}{', ...' if len(acts.attention_like) > 3 else ''}) "
                    "made no F.scaled_dot_product_attention call; attention logits are measured only through it"
                )
            return {}
        out: Metrics = {key("attn_logit_max", n): v for n, v in acts.attention.items()}
        out[key("attn_logit_max")] = torch.stack(list(acts.attention.values())).max()
        return out
