"""muP's optimizer rules: per-role learning rate, weight decay and Adam epsilon, as groups.

``mup_groups`` splits trainwell's decay / no_decay groups by muP role and gives each its
own ``lr`` (and ``eps``, ``weight_decay``). The loop scales every group's own ``initial_lr``
by the schedule and the autopilot's multiplier (``group["lr"] = group["initial_lr"] *
factor``), so the per-role ratios hold at every step: nothing sets one learning rate for all
groups (the ``mup`` README's warning about schedulers that do).

Rules, with m the parameter's width multiplier (``ParamRole.width_mult``):

==========  =====================  ======================  ===================
role        Adam-like lr           SGD lr                  Adam epsilon
==========  =====================  ======================  ===================
input       lr                     lr * m (fan-out)        eps / m
hidden      lr / m (fan-in)        lr * fan_out/fan_in     eps / m
output      lr (1/m on its input)  lr * m (fan-in)         eps / m
fixed       lr                     lr                      eps
==========  =====================  ======================  ===================

Sources: Tensor Programs V (Yang et al. 2022) Table 8 and the ``mup`` package's MuAdam /
MuSGD (``mup/optim.py``); epsilon: every width-dependent gradient entry shrinks as 1/m under
muP, so a fixed epsilon would swamp it at large width (nanoGPT-mup scales it by 1/m).
Weight decay is kept at a fixed ``lr * weight_decay`` per group (torch's AdamW multiplies the
decay by the group's lr; a hidden group's decay is therefore multiplied by m), so decay
per step does not change with width ("independent" decay, as nanoGPT-mup and Megatron).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from trainwell.errors import ConfigError
from trainwell.mup.roles import MupSpec, ParamRole

ADAM_LIKE = ("adam", "adamw", "nadam", "radam", "rmsprop", "lion", "schedulefree_adamw")
"""Optimizers whose update has entries of order lr whatever the gradient's scale (Adam's
normalisation, Lion's sign): the Adam rules."""
SGD_LIKE = ("sgd",)
WITH_EPS = ("adam", "adamw", "nadam", "radam", "rmsprop", "schedulefree_adamw")
SUPPORTED = ADAM_LIKE + SGD_LIKE


def lr_mult(r: ParamRole, optimizer: str) -> float:
    """The factor of the base learning rate for a parameter of role ``r``."""
    if optimizer in SGD_LIKE:
        return {"input": r.fan_out_mult, "output": r.fan_in_mult,
                "hidden": r.fan_out_mult / r.fan_in_mult, "fixed": 1.0}[r.role]
    return 1.0 / r.fan_in_mult if r.role == "hidden" else 1.0


def eps_mult(r: ParamRole) -> float:
    return 1.0 if r.role == "fixed" else 1.0 / r.width_mult


def optimizer_problems(optimizer: str) -> list[str]:
    if optimizer in SUPPORTED:
        return []
    return [f"model.parametrization = 'mup' has learning-rate rules for optim.name in "
            f"{', '.join(SUPPORTED)}; got {optimizer!r} (use one of those, or "
            "model.parametrization = 'sp')"]


def mup_groups(
    groups: list[dict[str, Any]], model: nn.Module, spec: MupSpec, optimizer: str, lr: float, eps: float
) -> list[dict[str, Any]]:
    """``groups`` (decay / no_decay) split by role, each with its muP ``lr``, ``eps`` (Adam
    family), ``weight_decay`` (lr * weight_decay fixed), and ``mup_role`` / ``mup_lr_mult`` for
    the record. Order is kept within each group, so checkpoints map back onto the tensors."""
    problems = optimizer_problems(optimizer)
    if problems:
        raise ConfigError(problems)
    names = {}
    for n, p in model.named_parameters():
        names.setdefault(id(p), n)
    out: list[dict[str, Any]] = []
    for g in groups:
        buckets: dict[tuple[str, float, float], list[nn.Parameter]] = {}
        for p in g["params"]:
            name = names[id(p)]
            if name not in spec.roles:
                raise ConfigError(f"parameter {name!r} has no muP role: it was added to the model "
                                  "after trainwell.mup.parametrize built it")
            r = spec.roles[name]
            buckets.setdefault((r.role, lr_mult(r, optimizer), eps_mult(r)), []).append(p)
        for (role, f_lr, f_eps), params in buckets.items():
            label = f"{g['name']}/{role}"
            if any(o["name"] == label for o in out):
                label = f"{label}@{f_lr:g}"
            group = {**g, "params": params, "name": label, "lr": lr * f_lr,
                     "mup_role": role, "mup_lr_mult": f_lr}
            if g.get("weight_decay"):
                group["weight_decay"] = g["weight_decay"] / f_lr
            if optimizer in WITH_EPS:
                group["eps"] = eps * f_eps
            out.append(group)
    return out
