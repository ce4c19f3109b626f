"""Norms: gradient, parameters, update size and ratio, distance from initialisation.

All are first-order byproducts (no extra forward or backward), globally and
(``per_layer``) per parameter tensor; a measurement computes every norm these need in one
fused subtraction and one fused norm call (``base.norm_bank``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainwell.instruments.base import (
    GRADS,
    INIT,
    UPDATE,
    Context,
    Metrics,
    Vector,
    key,
    norm_bank,
)

_KEYS: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def per_layer_keys(name: str, layers: list[str]) -> list[str]:
    """``inst/<name>/<layer>`` for each layer (built once per instrument and model)."""
    found = _KEYS.get((name, tuple(layers)))
    if found is None:
        found = _KEYS[(name, tuple(layers))] = [key(name, n) for n in layers]
    return found


def _report(name: str, sq: tuple[list[str], Tensor], per_layer: bool) -> Metrics:
    names, values = sq  # (L,) squared norms
    out: Metrics = {key(name): values.sum().sqrt()}
    if per_layer:
        out[key(name, "*")] = Vector(per_layer_keys(name, names), values.sqrt())
    return out


class GradNorm:
    """‖g‖₂ of the update's mean gradient, globally and per parameter tensor (Cockpit's GradNorm).

    Needs: grads (the gradient as the optimizer received it, so after clipping when the
    loop clips first; the pre-clip global norm is ``train/grad_norm``).
    Reading: tiny updates with a tiny gradient norm mean a plateau; tiny updates with a
    normal gradient norm mean the learning rate is too small. A layer whose norm is orders
    of magnitude below the others is not learning (vanishing gradients).
    """

    name = "grad_norm"
    needs = frozenset({GRADS})
    norms = ("grads",)

    def __init__(self, per_layer: bool = True) -> None:
        self.per_layer = per_layer

    def measure(self, ctx: Context) -> Metrics:
        assert ctx.grads is not None
        return _report(self.name, norm_bank(ctx, "grads"), self.per_layer)


class ParamNorm:
    """‖θ‖₂ after the update, globally and per parameter tensor.

    Needs: nothing beyond the parameters.
    Reading: steady growth of the norm under weight decay means the gradient pushes
    harder than the decay pulls; a norm that blows up precedes divergence.
    """

    name = "param_norm"
    needs: frozenset[str] = frozenset()
    norms = ("after",)

    def __init__(self, per_layer: bool = True) -> None:
        self.per_layer = per_layer

    def measure(self, ctx: Context) -> Metrics:
        assert ctx.params_after is not None  # θ_{t+1}, detached
        return _report(self.name, norm_bank(ctx, "after"), self.per_layer)


class UpdateSize:
    """‖θ_{t+1} − θ_t‖₂ (Cockpit's UpdateSize) and the update/parameter ratio
    ‖θ_{t+1} − θ_t‖ / ‖θ_t‖, globally and per parameter tensor.

    Needs: update (θ_t and θ_{t+1}).
    Reading: a healthy ratio is around 1e-3 per step for Adam-type optimizers (Karpathy's
    rule of thumb); 1e-1 means the step rewrites the weights (LR too high), 1e-5 means
    the layer barely moves. With the distance from init it shows how far and how fast the
    run travels.
    """

    name = "update_size"
    needs = frozenset({UPDATE})
    norms = ("update", "before")

    def __init__(self, per_layer: bool = True) -> None:
        self.per_layer = per_layer

    def measure(self, ctx: Context) -> Metrics:
        assert ctx.params_before is not None and ctx.params_after is not None
        names, upd = norm_bank(ctx, "update")
        _, par = norm_bank(ctx, "before")
        out = _report(self.name, (names, upd), self.per_layer)
        out[key("update_ratio")] = _ratio(upd.sum(), par.sum())
        if self.per_layer:
            out[key("update_ratio", "*")] = Vector(per_layer_keys("update_ratio", names), _ratio(upd, par))
        return out


def _ratio(upd_sq: Tensor, par_sq: Tensor) -> Tensor:
    # a zero-initialised tensor (biases, zero-init residual branches) has no scale yet:
    # report inf rather than a huge number that looks like a measurement
    return torch.where(par_sq > 0, (upd_sq / par_sq).sqrt(), torch.full_like(par_sq, torch.inf))


class Distance:
    """‖θ_{t+1} − θ_0‖₂, the distance travelled from the initialisation, globally and per
    parameter tensor (Cockpit's Distance).

    Needs: init (a copy of θ_0 taken when the runner was built; it is part of the runner's
    state_dict so that it survives a resume).
    Reading: grows fast early and flattens as the run settles; a distance that keeps
    growing linearly late in training means the run has not found a basin. Layers that
    barely leave their initialisation may be dead or unnecessary.
    """

    name = "distance"
    needs = frozenset({INIT})
    norms = ("init",)

    def __init__(self, per_layer: bool = True) -> None:
        self.per_layer = per_layer

    def measure(self, ctx: Context) -> Metrics:
        assert ctx.params_init is not None and ctx.params_after is not None
        return _report(self.name, norm_bank(ctx, "init"), self.per_layer)
