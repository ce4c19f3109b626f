"""Probes at initialisation: input statistics, the loss at init, and the depth profile
(pre-activation scale, dead and saturated units, gradient size, layer by layer).

Each probe builds nothing it does not own: a fresh model from ``task.build_model()``, batches
drawn with a private generator through the training loader (any data fit() takes), hooks
removed before it returns. Numbers come back as plain
floats in small dataclasses, ready for the rules (rules.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.data.draw import draw_samples
from trainwell.instruments.activations import ACTIVATION_TYPES, kind_of
from trainwell.tasks.base import Task, input_tensor

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def draw_batch(task: Task, data: Any, n: int, seed: int, device: torch.device) -> Any:
    """``n`` samples of the training data, of any kind fit() takes (data/draw.py): picked at
    random from a dataset (a private generator: the global RNG is untouched), the next ones
    of a stream."""
    return draw_samples(data, task.collate, n, seed, device)[0]


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputStats:
    """Statistics of the floating-point model input over some samples (features = all
    dimensions after the first)."""

    samples: int
    features: int
    mean: float
    """Mean over all elements."""
    std: float
    """Standard deviation over all elements."""
    offset: float
    """RMS of the per-feature means over the RMS of the per-feature standard deviations:
    how far the data sits from the origin compared with how much it varies."""
    minimum: float
    maximum: float


def input_stats(batch: Any) -> InputStats | None:
    """None when the batch has no floating-point input (token ids go through an embedding)."""
    x = input_tensor(batch)
    if x is None or x.shape[0] < 2:
        return None
    flat = x.detach().float().flatten(1)  # (B, D)
    per_mean = flat.mean(0)  # (D,)
    per_std = flat.std(0)  # (D,)
    spread = per_std.square().mean().sqrt()
    offset = per_mean.square().mean().sqrt() / spread if spread > 0 else math.inf
    return InputStats(
        samples=int(flat.shape[0]),
        features=int(flat.shape[1]),
        mean=float(flat.mean()),
        std=float(flat.std()),
        offset=float(offset),
        minimum=float(flat.min()),
        maximum=float(flat.max()),
    )


# ---------------------------------------------------------------- depth profile


@dataclass(frozen=True)
class ActivationLayer:
    """One activation module as the first forward at init saw it."""

    name: str
    kind: str
    """'relu', 'sigmoid', 'tanh' or 'other' (instruments.activations.kind_of)."""
    pre_std: float
    """Standard deviation of its input over the batch, per unit, averaged over units: how
    much the signal reaching this depth still varies from sample to sample."""
    dead_frac: float | None
    """ReLU: fraction of units never positive over the batch."""
    saturated_frac: float | None
    """sigmoid/tanh: fraction of outputs within eps of an asymptote."""


@dataclass(frozen=True)
class WeightedLayer:
    """One Linear/Conv layer at init."""

    name: str
    fan_in: int
    fan_out: int
    weight_std: float
    he_std: float
    """sqrt(2 / fan_in): He et al. 2015 for a layer feeding a ReLU."""
    xavier_std: float
    """sqrt(2 / (fan_in + fan_out)): Glorot & Bengio 2010."""
    grad_rms: float
    """RMS of the weight's gradient (per element) on the probe batch."""


@dataclass
class DepthProfile:
    """Layer-by-layer statistics of one forward and backward at initialisation, in the
    order the forward pass runs the layers."""

    loss: float
    activations: list[ActivationLayer] = field(default_factory=list)
    weighted: list[WeightedLayer] = field(default_factory=list)
    has_gradient: bool = True
    """False when the loss does not depend on any parameter (a detached output)."""


def depth_profile(model: nn.Module, task: Task, batch: Any, saturation_eps: float = 0.01) -> DepthProfile:
    """One forward and backward of ``batch`` through ``model`` (its .grad is left zeroed)."""
    acts: list[ActivationLayer] = []
    order: list[str] = []
    handles = []
    weighted = {n: m for n, m in model.named_modules() if isinstance(m, WEIGHTED)}

    def on_activation(name: str, kind: str):  # noqa: ANN202
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, Tensor) and inputs and isinstance(inputs[0], Tensor):
                acts.append(_activation_layer(name, kind, inputs[0], output, saturation_eps))

        return hook

    def on_weighted(name: str):  # noqa: ANN202
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if name not in order:
                order.append(name)

        return hook

    for name, m in model.named_modules():
        if isinstance(m, ACTIVATION_TYPES):
            handles.append(m.register_forward_hook(on_activation(name, kind_of(m))))
        elif name in weighted:
            handles.append(m.register_forward_hook(on_weighted(name)))
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        out = task.loss(model, batch)
        loss = out.sum.float() / float(out.count)
        has_grad = loss.requires_grad
        if has_grad:
            loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers = [_weighted_layer(name, weighted[name]) for name in order]
    model.zero_grad(set_to_none=True)
    return DepthProfile(float(loss.detach()), acts, layers, has_grad)


def _weighted_layer(name: str, m: nn.Module) -> WeightedLayer:
    """A Linear/Conv layer's scale and gradient after the profile's backward."""
    w = m.weight
    fan_in, fan_out = w[0].numel(), w.shape[0] * w[0][0].numel() if w.ndim > 2 else w.shape[0]
    g = w.grad
    return WeightedLayer(
        name, int(fan_in), int(fan_out), float(w.detach().float().std()),
        math.sqrt(2.0 / fan_in), math.sqrt(2.0 / (fan_in + fan_out)),
        float(g.float().square().mean().sqrt()) if g is not None else 0.0,
    )  # fmt: skip


def _activation_layer(name: str, kind: str, x: Tensor, y: Tensor, saturation_eps: float) -> ActivationLayer:
    """One activation's input spread and, by kind, its dead units (ReLU) or saturation."""
    x, y = x.detach().float(), y.detach().float()
    dead = sat = None
    if kind == "relu":
        dead = float((~_per_unit(y > 0).any(dim=1)).float().mean())
    elif kind == "sigmoid":
        sat = float(((y < saturation_eps) | (y > 1 - saturation_eps)).float().mean())
    elif kind == "tanh":
        sat = float((y.abs() > 1 - saturation_eps).float().mean())
    return ActivationLayer(name, kind, _unit_std(x), dead, sat)


def _per_unit(y: Tensor) -> Tensor:
    """(units, rest): a unit is dim 1 of (B, C, ...) and the last dim of (B, T, C) (as the
    ActivationStats instrument)."""
    if y.ndim <= 1:
        return y.reshape(-1, 1)
    unit_dim = y.ndim - 1 if y.ndim == 3 else 1
    return y.movedim(unit_dim, 0).reshape(y.shape[unit_dim], -1)


def _unit_std(x: Tensor) -> float:
    per = _per_unit(x)  # (units, samples...)
    if per.shape[1] < 2:
        return 0.0
    return float(per.std(dim=1).mean())
