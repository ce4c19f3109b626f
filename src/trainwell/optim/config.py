"""The ``[optim]`` and ``[schedule]`` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainwell.section import Section


class OptimConfig(Section):
    name: str = "adamw"
    """Optimizer (see `trainwell config show` for the list), or a user submission "my_pkg.my_mod:make_submission" returning a torch Optimizer. AdamW is the default of the Tuning Playbook and of LLM training (OPT, LLaMA)."""
    lr: float = Field(1e-3, gt=0.0)
    """Peak learning rate (after warmup)."""
    weight_decay: float = Field(0.1, ge=0.0)
    """Decoupled weight decay (OPT: 0.1). Never applied to biases, norm weights and embeddings."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam-family (beta1, beta2). beta2=0.95 is more stable than 0.999 for large models (OPT, LLaMA)."""
    eps: float = Field(1e-8, gt=0.0)
    """Adam-family epsilon."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """Momentum for sgd, rmsprop and lars-style optimizers."""
    nesterov: bool = True
    """Nesterov momentum for sgd (the Tuning Playbook's preferred SGD)."""


class ScheduleConfig(Section):
    name: Literal["constant", "warmup_cosine", "warmup_linear", "wsd", "trapezoidal", "cosine_restarts", "step"] = (
        "warmup_cosine"
    )
    """Learning-rate schedule. Warmup then decay is the playbook default; warmup_linear decays to 10% like OPT; wsd = warmup-stable-decay; cosine_restarts = SGDR, three cycles each twice as long."""
    warmup_steps: int = Field(100, ge=0)
    """Linear warmup from 0 to the peak LR over this many steps (crucial for transformers; Dieleman, MLSS 2023)."""
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Floor of the decay as a fraction of the peak LR (warmup_cosine, wsd, trapezoidal, cosine_restarts). warmup_linear always ends at 0.1 (OPT)."""
    decay_fraction: float = Field(0.2, gt=0.0, le=1.0)
    """wsd and trapezoidal: fraction of training spent in the final decay."""
    step_every: int = Field(1000, ge=1)
    """step: multiply the LR by step_gamma every this many steps."""
    step_gamma: float = Field(0.1, gt=0.0, le=1.0)
    """step: the factor applied every step_every steps."""


def advice(optim: OptimConfig, schedule: ScheduleConfig) -> list[str]:
    """Settings that are valid but probably not meant: one line each, with the reason and
    the fix. The run starts anyway (and logs them); ``trainwell config show`` lists them."""
    out = []
    if optim.name == "schedulefree_adamw" and schedule.name != "constant":
        out.append(
            f"optim.name = 'schedulefree_adamw' replaces the learning-rate decay by averaging the "
            f"iterates (Defazio et al. 2024), but schedule.name = {schedule.name!r} decays the rate "
            "as well: set schedule.name = 'constant' (its warmup stays)"
        )
    if optim.name == "lion" and optim.lr >= 1e-3:
        out.append(
            f"optim.name = 'lion' with optim.lr = {optim.lr:g}, a rate sized for AdamW: Lion's sign "
            "update moves every coordinate by the full lr, so Chen et al. 2023 use a 3-10x smaller "
            f"lr than AdamW's and a 3-10x larger weight decay (try optim.lr = {optim.lr / 10:.2g} to "
            f"{optim.lr / 3:.2g})"
        )
    return out
