"""``parametrize(make, width, base_width)``: a model in muP, for any model built by ``make(width)``.

What it changes in the model (the optimizer's part is in ``mup/optim.py``):

* **init**: hidden matrices get the standard deviation the model's own init gives at the
  base width, divided by sqrt(m) (variance 1/fan_in); output matrices keep their base-width
  standard deviation at every width (the ``mup`` package's ``MuReadout`` rescaling); input
  matrices keep theirs too. The model's own init law is measured, not assumed: its standard
  deviation at the base width and at twice the base width gives the power of the width it
  follows (rounded to halves: 1/sqrt(fan_in) inits are already right for hidden matrices
  and stay untouched; GPT-2's constant 0.02 is divided by sqrt(m)). Zero-initialised
  tensors stay zero.
* **readout**: each Linear that maps the width to a fixed number of outputs multiplies its
  input by 1/m (Tensor Programs V, Table 8's multiplier form). A head tied to the input
  embedding gets the same 1/m on its input, so the logits carry it and the shared matrix
  stays an input parameter (as nanoGPT-mup does; it avoids mup #55).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainwell.errors import ConfigError
from trainwell.mup.roles import ATTR, MupSpec, find_readouts, infer_roles, spec_of


class MupReadout(nn.Linear):
    """An ``nn.Linear`` whose input is multiplied by ``multiplier`` (1/m under muP) before the
    matmul. ``parametrize`` turns a model's plain ``nn.Linear`` readout into one in place (same
    object, parameters, name and hooks; only ``forward`` differs), so a state dict saved under
    muP loads into the same model built again, and a tied weight stays tied."""

    multiplier: float = 1.0

    def forward(self, x: Tensor) -> Tensor:  # (..., fan_in) -> (..., fan_out)
        return F.linear(x * self.multiplier, self.weight, self.bias)


class _ScaleInput:
    """A forward pre-hook multiplying the first input by a constant: the readout multiplier
    for readouts that are not a plain ``nn.Linear`` (a subclass with its own forward)."""

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] * self.multiplier, *args[1:])


def parametrize(make: Callable[[int], nn.Module], width: int, base_width: int) -> nn.Module:
    """``make(width)`` in muP relative to ``make(base_width)``; at ``width == base_width`` it is
    the same model as ``make(width)`` (every multiplier is 1).

    ``make`` must build the same parameters at every width, only their sizes changing with
    the width. It is called three times: at ``width`` (first, so the random numbers it
    draws are those of the plain model), then at the base width and twice the base width
    with the random number generator forked (the shapes and init scales the roles and rules
    are read from; keep the base width small). The result's roles (``spec_of(model)``) are
    what ``build_optimizer`` turns into per-group learning rates."""
    problems = []
    if base_width < 1:
        problems.append(f"muP base width must be >= 1, got {base_width}")
    if width < 1:
        problems.append(f"muP width must be >= 1, got {width}")
    if problems:
        raise ConfigError(problems)
    model = make(width)
    if spec_of(model) is not None:
        raise ConfigError("parametrize: the model is already in muP (it has a MupSpec)")
    with torch.random.fork_rng(devices=[]):
        base, other = make(base_width), make(2 * base_width)
    roles = infer_roles(model, base, other)
    readouts = find_readouts(model, base, other)
    init_scale = _rescale_init(model, base, other)
    for name, mult in readouts.items():
        _set_readout(model.get_submodule(name), mult)
    setattr(model, ATTR, MupSpec(width, base_width, roles, readouts, init_scale))
    return model


def _rescale_init(model: nn.Module, base: nn.Module, other: nn.Module) -> dict[str, float]:
    """Multiply each matrix of ``model`` so its std follows muP's law (module docstring);
    returns name -> the factor applied (1.0 where nothing changed)."""
    roles = infer_roles(model, base, other)
    probe = infer_roles(other, base, other)  # how much each dimension grew between the probes
    base_p, other_p = dict(base.named_parameters()), dict(other.named_parameters())
    out = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = roles[name]
            out[name] = 1.0
            if p.ndim < 2 or r.role == "fixed" or probe[name].width_mult == 1.0:
                continue
            s_base, s_other = base_p[name].float().std().item(), other_p[name].float().std().item()
            if s_base == 0.0 or s_other == 0.0:  # zero-initialised on purpose: stays zero
                continue
            # the init's own law: std ~ width^-power, power rounded to halves
            power = round(2 * math.log(s_base / s_other) / math.log(probe[name].width_mult)) / 2
            target = 0.5 if r.role == "hidden" else 0.0  # muP: 1/sqrt(fan_in) hidden, constant otherwise
            factor = r.width_mult ** (power - target)
            if factor != 1.0:
                p.mul_(factor)
            out[name] = factor
    return out


def _set_readout(module: nn.Module, multiplier: float) -> None:
    if type(module) is nn.Linear:
        module.__class__ = MupReadout
        module.multiplier = multiplier
    else:
        module.register_forward_pre_hook(_ScaleInput(multiplier))
