"""Nonlinearities by name, and the init gain that keeps activations at unit scale through them."""

from __future__ import annotations

import math

from torch import nn

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid")

LEAKY_SLOPE = 0.01
"""Negative slope of leaky_relu: torch's default, enough to keep units from dying."""


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of ACTIVATIONS)."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def activation_gain(name: str | None) -> float:
    """Init gain for a layer whose output goes through ``name`` (None: a linear output).

    relu, leaky_relu, tanh, sigmoid: the values of ``torch.nn.init.calculate_gain``
    (He et al. 2015 for ReLU). gelu and silu have no closed form; they pass the positive
    half like ReLU, so they take ReLU's sqrt(2), the usual choice.
    """
    if name is None:
        return 1.0
    if name in ("gelu", "silu"):
        return math.sqrt(2.0)
    if name == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
    if name in ("relu", "tanh", "sigmoid"):
        return nn.init.calculate_gain(name)
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
