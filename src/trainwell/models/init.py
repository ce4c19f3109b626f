"""Weight initialisation schemes, applied to a whole model after it is built.

The reference models tag their layers so the schemes can do the right thing per layer:
``feeds(layer, "relu")`` says which nonlinearity follows a layer (for the He gain and the
positive ReLU bias), and ``zero_init(layer)`` marks a residual branch's last layer that
the model zeroed on purpose (Goyal et al. 2017), which no scheme overwrites. Untagged
layers of user models get the ``activation`` argument's gain, and a Linear/Conv directly
followed by ``nn.ReLU`` inside an ``nn.Sequential`` counts as feeding a ReLU.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import nn

from trainwell.models.activations import activation_gain

SCHEMES = ("default", "xavier", "kaiming", "orthogonal", "normal")

_FEEDS = "trainwell_feeds"
_ZERO = "trainwell_zero_init"
_UNTAGGED = object()
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

M = TypeVar("M", bound=nn.Module)


def feeds(layer: M, activation: str | None) -> M:
    """Tag ``layer`` with the nonlinearity its output goes through (None: a linear output,
    such as a classifier head or a residual branch's projection). Returns the layer."""
    setattr(layer, _FEEDS, activation)
    return layer


def zero_init(layer: M) -> M:
    """Zero the weight (and bias) of ``layer`` and tag it so that ``apply_init`` leaves it:
    a residual branch ending in it then starts as the identity (Goyal et al. 2017)."""
    with torch.no_grad():
        for name in ("weight", "bias"):
            p = getattr(layer, name, None)
            if isinstance(p, torch.Tensor):
                p.zero_()
    setattr(layer, _ZERO, True)
    return layer


def apply_init(
    model: nn.Module,
    scheme: str,
    std: float = 0.02,
    relu_bias: float = 0.0,
    activation: str | None = "relu",
) -> nn.Module:
    """Re-initialise the Linear/Conv weights of ``model`` in place and return it.

    scheme: 'default' keeps the model's own init; 'xavier' is Glorot & Bengio 2010
    (uniform, gain 1, fan_in + fan_out); 'kaiming' is He et al. 2015 (normal, fan_in,
    std = gain / sqrt(fan_in) with the gain of the activation the layer feeds, sqrt(2)
    for ReLU); 'orthogonal' is Saxe et al. 2014 with the same gain; 'normal' draws
    N(0, std) for weights and embeddings. Biases start at 0 under every scheme but
    'default'. ``relu_bias`` > 0 then sets the bias of every layer that feeds a ReLU to
    that value, a guard against units that start dead, under every scheme.
    ``activation`` is the gain assumed for layers the model did not tag (they get no
    ReLU bias unless an ``nn.ReLU`` follows them in an ``nn.Sequential``); default relu,
    the assumption of torch's own kaiming init. ``std`` defaults to GPT-2's 0.02.
    Shared (tied) parameters are initialised once, by the first module that holds them.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    relu_fed = _sequential_relu_feeders(model)
    seen: set[int] = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or id(weight) in seen:
            continue
        seen.add(id(weight))
        if isinstance(module, nn.Embedding):
            if scheme == "normal":
                with torch.no_grad():
                    module.weight.normal_(0.0, std)
            continue
        if not isinstance(module, _WEIGHTED) or getattr(module, _ZERO, False):
            continue
        tag = getattr(module, _FEEDS, _UNTAGGED)
        if tag is _UNTAGGED:
            feeds_relu = id(module) in relu_fed
            act = "relu" if feeds_relu else activation
        else:
            feeds_relu, act = tag == "relu", tag
        _init_weight(module, scheme, std, activation_gain(act))  # type: ignore[arg-type]
        if relu_bias > 0 and feeds_relu and module.bias is not None:
            with torch.no_grad():
                module.bias.fill_(relu_bias)
    return model


def _init_weight(module: nn.Module, scheme: str, std: float, gain: float) -> None:
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    bias = module.bias if isinstance(module.bias, torch.Tensor) else None
    if scheme == "default":
        return
    with torch.no_grad():
        if scheme == "xavier":
            nn.init.xavier_uniform_(weight)
        elif scheme == "kaiming":
            fan_in = weight[0].numel()  # in_features * kernel size
            weight.normal_(0.0, gain / math.sqrt(fan_in))
        elif scheme == "orthogonal":
            nn.init.orthogonal_(weight, gain=gain)
        else:  # normal
            weight.normal_(0.0, std)
        if bias is not None:
            bias.zero_()


def _sequential_relu_feeders(model: nn.Module) -> set[int]:
    """ids of Linear/Conv layers directly followed by nn.ReLU inside an nn.Sequential."""
    out: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            layers = list(module)
            for layer, nxt in zip(layers, layers[1:], strict=False):
                if isinstance(layer, _WEIGHTED) and isinstance(nxt, nn.ReLU):
                    out.add(id(layer))
    return out
