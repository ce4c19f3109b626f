"""Optimizers by name: ``OPTIMIZERS.get(cfg.name)(cfg, groups, model) -> Optimizer``.

Every builder takes the same three things: the ``[optim]`` section, the parameter groups of
``groups.param_groups`` (decay / no_decay) and the model (for builders that regroup, like
Muon). pytorch_optimizer and schedulefree are imported inside the builders (seconds
each), so that reading a config does not pay for them.

The loop owns the learning rate: before every update it sets
``group["lr"] = group["initial_lr"] * schedule(step) * multiplier``. ``build_optimizer``
puts ``initial_lr`` on every group; the optimizers' own schedules and relative step sizes
are switched off so that the schedule the user chose is the only one.

Optimizer state holds tensors and plain numbers only, so ``torch.load(weights_only=True)``
restores it (this is why ``shampoo`` is the tensor-state Shampoo, not ScalableShampoo,
whose state holds Python objects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainwell.errors import ConfigError
from trainwell.mup import mup_groups, spec_of
from trainwell.optim.config import OptimConfig
from trainwell.optim.groups import output_head_parameter_ids, param_groups
from trainwell.registry import Registry

Groups = list[dict[str, Any]]
OptimizerBuilder = Callable[[OptimConfig, Groups, nn.Module], torch.optim.Optimizer]

OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", "optim.name")
"""name -> builder(cfg, groups, model). Importing ``trainwell.optim`` registers every name."""


def build_optimizer(cfg: OptimConfig, model: nn.Module, steps: int | None = None) -> torch.optim.Optimizer:
    """The optimizer ``cfg.name`` over ``model``'s trainable parameters, weight decay on
    matrices only (see ``groups.py``), with ``initial_lr`` set on every group. A model in
    muP (``trainwell.mup``) gets its groups split by role, each with its own lr.

    Optimizers with ``train()``/``eval()`` methods (schedule-free) are returned in train
    mode; the loop calls ``eval()`` before evaluating or checkpointing and ``train()``
    after, whenever the optimizer has them.
    """
    groups = param_groups(model, cfg.weight_decay)
    spec = spec_of(model)
    if spec is not None:  # muP: a group per role, each with its own lr (trainwell.mup)
        groups = mup_groups(groups, model, spec, cfg.name, cfg.lr, cfg.eps)
    if ":" in cfg.name:
        optimizer = submission_optimizer(cfg, groups, steps)
    else:
        optimizer = OPTIMIZERS.get(cfg.name)(cfg, groups, model)
    for group in optimizer.param_groups:
        # setdefault: a builder (e.g. muP) may already have given a group its own peak lr.
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def submission_optimizer(cfg: OptimConfig, groups: Groups, steps: int | None) -> torch.optim.Optimizer:
    """A user's training algorithm, ``optim.name = "my_pkg.my_mod:make_submission"``: called
    as ``make_submission(param_groups, hyperparameters, steps)`` with the ``[optim]`` values as
    a dict and the run's step budget, it returns a torch Optimizer. If the optimizer has
    ``eval()`` and ``train()`` methods, the loop calls them around every evaluation and
    checkpoint (the weights swap AlgoPerf's ``prepare_for_eval`` allows, as schedule-free
    optimizers do). If it has an ``lr_factor(step)`` method, that is its learning-rate
    schedule (a factor of the peak lr at each step) in place of ``[schedule]``'s."""
    from trainwell.errors import TaskError
    from trainwell.tasks.user import resolve_entry_point

    try:
        make = resolve_entry_point(cfg.name)
    except TaskError as e:
        raise ConfigError(f"optim.name = {cfg.name!r}: {str(e).split(': ', 1)[-1]}") from None
    optimizer = make(groups, cfg.model_dump(mode="python"), steps)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optim.name = {cfg.name!r} returned {type(optimizer).__name__}, not a "
                          "torch.optim.Optimizer: make_submission(param_groups, hyperparameters, steps) "
                          "must return one")
    return optimizer


def _speed(groups: Groups, fused_available: bool) -> dict[str, bool]:
    """``fused=True`` where torch has a fused kernel for this optimizer and every parameter
    is a floating-point CUDA tensor, or a plain (not distributed) CPU one; else
    ``foreach=True``. On a CPU the fused kernel is one vectorised loop per tensor where
    foreach falls back to a dozen ops per tensor: AdamW's step on the digits MLP (18
    tensors, 76k parameters, 1 thread) took 0.42 ms fused, 1.22 ms foreach and 1.30 ms
    with torch's default (a Python loop over the tensors), a fifth of the whole step
    (benchmarks/RESULTS.md section 1)."""
    params = [p for g in groups for p in g["params"]]
    floats = all(p.is_floating_point() for p in params)
    on_cuda = all(p.is_cuda for p in params)
    on_cpu = all(p.device.type == "cpu" and type(p.data) is torch.Tensor for p in params)
    return {"fused": True} if fused_available and floats and (on_cuda or on_cpu) else {"foreach": True}


@OPTIMIZERS.register(
    "sgd",
    "SGD with momentum (optim.momentum) and Nesterov (optim.nesterov); weight decay is L2 (coupled)",
)
def _sgd(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    # torch rejects nesterov without momentum; with momentum 0 nesterov means nothing anyway.
    nesterov = cfg.nesterov and cfg.momentum > 0
    return torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov, **_speed(groups, True)
    )


@OPTIMIZERS.register(
    "rmsprop",
    "RMSprop with momentum (optim.momentum); alpha 0.99 (torch default); weight decay is L2",
)
def _rmsprop(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        groups, lr=cfg.lr, momentum=cfg.momentum, eps=cfg.eps, **_speed(groups, False)
    )


@OPTIMIZERS.register(
    "adam", "Adam (Kingma & Ba 2015); weight decay is an L2 penalty (coupled): prefer adamw"
)
def _adam(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **_speed(groups, True))


@OPTIMIZERS.register(
    "adamw", "AdamW, decoupled weight decay (Loshchilov & Hutter 2019): the playbook default"
)
def _adamw(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **_speed(groups, True)
    )


@OPTIMIZERS.register("nadam", "Adam with Nesterov momentum (Dozat 2016), decoupled weight decay")
def _nadam(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.NAdam(
        groups,
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        decoupled_weight_decay=True,
        **_speed(groups, False),
    )


@OPTIMIZERS.register("radam", "Rectified Adam (Liu et al. 2020), decoupled weight decay")
def _radam(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.RAdam(
        groups,
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        decoupled_weight_decay=True,
        **_speed(groups, False),
    )


@OPTIMIZERS.register(
    "adafactor",
    "Adafactor (Shazeer & Stern 2018) with factored second moments; lr from the schedule",
)
def _adafactor(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    from pytorch_optimizer import AdaFactor

    return AdaFactor(
        groups,
        lr=cfg.lr,
        # betas[1] caps Adafactor's rising beta2_t = 1 - t^-0.8 (the paper's schedule).
        betas=cfg.betas,
        eps1=1e-30,  # the paper's epsilon_1 (inside the factored second moment)
        # External lr: the schedule is the only lr schedule and the lr means the same as
        # for Adam (no time-dependent relative step, no scaling by the parameter's RMS).
        relative_step=False,
        scale_parameter=False,
        warmup_init=False,
        # fp32 momentum like the fp32 master weights (the library's bf16 default saves
        # memory but rounds every update).
        momentum_dtype=torch.float32,
    )


@OPTIMIZERS.register(
    "lamb", "LAMB (You et al. 2020): Adam with a layer-wise trust ratio, for large batches"
)
def _lamb(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    from pytorch_optimizer import Lamb

    return Lamb(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decouple=True)


@OPTIMIZERS.register(
    "lion",
    "Lion (Chen et al. 2023): sign updates; use a 3-10x smaller lr and larger weight decay than AdamW",
)
def _lion(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    from pytorch_optimizer import Lion

    return Lion(groups, lr=cfg.lr, betas=cfg.betas, weight_decouple=True)


@OPTIMIZERS.register(
    "muon",
    "Muon (Jordan et al. 2024) on hidden matrices, AdamW on embeddings, head, biases and gains",
)
def _muon(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    """Orthogonalised momentum for hidden weight matrices (``ndim >= 2``, not an
    embedding, not the output head); every other parameter is updated by AdamW inside
    the same optimizer (pytorch_optimizer's ``use_muon=False`` groups).

    ``use_adjusted_lr``: Moonlight's scaling ``0.2 * sqrt(max(fan_out, fan_in))`` gives
    Muon updates the RMS of an AdamW update (Liu et al. 2025, "Muon is Scalable for LLM
    Training"), so one ``optim.lr`` and ``optim.weight_decay`` serve both kinds of group.
    Momentum and Nesterov come from ``optim.momentum``/``optim.nesterov`` (the reference
    uses 0.95 with Nesterov).
    """
    from pytorch_optimizer import Muon

    head = output_head_parameter_ids(model)
    out: Groups = []
    for g in groups:
        # Hidden matrices are all in the decay group (embeddings are in no_decay).
        is_decay = g["name"] == "decay"
        hidden = [p for p in g["params"] if is_decay and id(p) not in head]
        other = [p for p in g["params"] if not (is_decay and id(p) not in head)]
        if hidden:
            out.append({**g, "params": hidden, "name": "muon", "use_muon": True})
        if other:
            out.append({**g, "params": other, "name": f"adamw_{g['name']}", "use_muon": False})
    return Muon(
        out,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        use_adjusted_lr=True,
        adamw_lr=cfg.lr,
        adamw_betas=cfg.betas,
        adamw_eps=cfg.eps,
    )


@OPTIMIZERS.register(
    "shampoo",
    "Shampoo (Gupta et al. 2018): a d x d preconditioner per tensor dimension; small models only",
)
def _shampoo(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    """Full-matrix Shampoo, preconditioners recomputed every step (the paper's algorithm).

    Memory is d^2 per dimension d of every tensor and each step takes an SVD of each:
    fine for benchmark-sized models; for transformers prefer ``soap``. Weight decay is
    decoupled like AdamW's (the library's default is L2).
    """
    from pytorch_optimizer import Shampoo

    return Shampoo(groups, lr=cfg.lr, weight_decouple=True)


@OPTIMIZERS.register("soap", "SOAP (Vyas et al. 2024): Adam in Shampoo's eigenbasis")
def _soap(cfg: OptimConfig, groups: Groups, model: nn.Module) -> torch.optim.Optimizer:
    from pytorch_optimizer import SOAP

    # precondition_frequency 10: the paper's default eigenbasis refresh (cost vs staleness).
    return SOAP(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, precondition_frequency=10)


@OPTIMIZERS.register(
    "schedulefree_adamw",
    "Schedule-free AdamW (Defazio et al. 2024): pair it with schedule.name = 'constant'",
)
def _schedulefree_adamw(
    cfg: OptimConfig, groups: Groups, model: nn.Module
) -> torch.optim.Optimizer:
    """Schedule-free AdamW. It averages iterates instead of decaying the lr, so use a
    constant schedule (warmup included: its own ``warmup_steps`` stays 0 so that the
    warmup is trainwell's schedule alone).

    It must be in train mode to step and in eval mode to evaluate or save weights (the
    parameters hold a different point in each mode; the mode is part of its state dict,
    so resume is exact either way): the loop calls ``optimizer.train()`` and
    ``optimizer.eval()`` whenever an optimizer has them. Returned in train mode.
    """
    from schedulefree import AdamWScheduleFree

    optimizer = AdamWScheduleFree(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, warmup_steps=0, foreach=True
    )
    optimizer.train()
    return optimizer
