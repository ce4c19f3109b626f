"""The rules: one small pure function per finding, statistics in, a Finding or None out.
This file holds the model's family (depth profile, overfit one batch, BatchNorm);
rules_train.py the short run's (learning rate, clipping, batch size), rules_data.py the data's.

Every threshold names its reason and source. Sources: EECE454 lecture "Training neural
networks" (2024: vanishing gradients x/4^L, dead ReLUs, centring, Xavier/He);
Karpathy, "A Recipe for Training Neural Networks" (2019: verify the loss at init, overfit one
batch, update/parameter ratio ~1e-3); Schneider et al. 2021, "Cockpit" (Alpha); the Google
Tuning Playbook (clipping, instability); McCandlish et al. 2018 (gradient noise scale);
Cohen et al. 2021 (edge of stability, 2/lr).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from trainwell.diagnose.findings import Finding
from trainwell.diagnose.probes import ActivationLayer, WeightedLayer
from trainwell.diagnose.probes_train import (
    OVERFIT_TARGET,
    BatchNormCheck,
    OverfitResult,
)

GRAD_RATIO = 100.0
"""Vanishing/exploding: the first layer's gradient RMS differs from the last's by more than
this factor. A sigmoid divides the gradient by at least 4 per layer (EECE454 lecture: max scale
x/4^L), so 100 is about three saturating layers' worth; healthy nets measured here stay
within 4x (digits MLP 0.3x, bytes-lm GPT 1x)."""

SIGNAL_RATIO = 10.0
"""Initialisation scale: the per-unit spread of the pre-activations changes by more than this
factor from the first to the last activation layer. Xavier/He choose the weight scale so the
activation variance stays constant over layers (EECE454 lecture); a factor 10 over the depth of a
small net is far outside what those inits give (digits and GPT at init: within 1.1x)."""

SATURATED_FRAC = 0.2
"""Saturated sigmoid/tanh: more than a fifth of the outputs within eps (instruments.
saturation_eps) of an asymptote, where the local gradient is below ~eps (EECE454 lecture: large
init makes tanh outputs go to +-1 and gradients very small)."""

DEAD_FRAC = 0.25
"""Dead ReLUs: more than a quarter of the units never positive over a batch. A dead unit gets
no gradient and does not come back (EECE454 lecture, 'Dying ReLU'); a healthy ReLU net at init has
almost none (0 of 128 per layer on the digits MLP)."""

INIT_LOSS_FACTOR = 1.5
"""Loss at init: more than 1.5 x log(C) means confidently wrong initial predictions; a
well-initialised classifier starts near log(C) (Karpathy 2019: 'verify loss @ init'). The
built-in tasks start within 1.1x (digits 2.49 vs 2.30, bytes-lm 5.1 vs 5.5)."""

GRADIENT_SHARE_MIN = 0.5
"""A model that cannot fit one batch while most of its parameters (by count) never get a
gradient is cut off from its loss: the missing gradient is the cause, not the learning rate
(a model with its output detached and only the last bias attached got 'learning rate too
high' for a flat loss)."""

ACCURACY_MIN = 0.5
"""Overfit one batch: a loss that falls to a tenth while accuracy on the same few samples stays
below half means the loss does not score what the metric does (labels ignored or misaligned).
Not higher: a saturated tanh net measured here reached 7 of 8 with its loss at 0.07x."""


def gradient_flow(layers: Sequence[WeightedLayer]) -> Finding | None:
    """Vanishing or exploding gradients across depth at init. Layers with a zero weight or
    a zero gradient (zero-initialised residual branches and the layers behind them) say
    nothing about flow and are left out."""
    live = [w for w in layers if w.weight_std > 0 and w.grad_rms > 0]
    if len(live) < 3:
        return None
    first, last = live[0], live[-1]
    ratio = first.grad_rms / last.grad_rms
    evidence = {
        "first layer": first.name, "first grad RMS": first.grad_rms,
        "last layer": last.name, "last grad RMS": last.grad_rms, "ratio first/last": ratio,
        "layers": len(live),
    }  # fmt: skip
    if ratio < 1 / GRAD_RATIO:
        return Finding(
            "vanishing_gradients", "Vanishing gradients: the first layers get almost no gradient", "high",
            evidence,
            "Use ReLU/GELU instead of sigmoid/tanh in hidden layers, He or Xavier init "
            "(model.init = 'kaiming'), normalisation layers or residual connections.",
            "EECE454 lecture: sigmoid shrinks gradients by up to 4 per layer; threshold 100x",
        )
    if ratio > GRAD_RATIO:
        return Finding(
            "exploding_gradients", "Exploding gradients: the first layers get far larger gradients than the last", "high",
            evidence,
            "Lower the initial weight scale (He/Xavier init), add normalisation layers, and keep clipping on.",
            "EECE454 lecture: a weight scale above He's accumulates with depth; threshold 100x",
        )
    return None


def init_scale(acts: Sequence[ActivationLayer], layers: Sequence[WeightedLayer]) -> Finding | None:
    """Activation spread growing or shrinking with depth, compared with Xavier/He."""
    live = [a for a in acts if math.isfinite(a.pre_std)]
    if len(live) < 3 or live[0].pre_std <= 0:
        return None
    ratio = live[-1].pre_std / live[0].pre_std
    if 1 / SIGNAL_RATIO <= ratio <= SIGNAL_RATIO:
        return None
    hidden = [w for w in layers if w.weight_std > 0][1:-1] or [w for w in layers if w.weight_std > 0]
    w = hidden[0] if hidden else None
    evidence: dict[str, object] = {
        "pre-activation std, first layer": live[0].pre_std,
        "pre-activation std, last layer": live[-1].pre_std,
        "change over depth": ratio,
        "activation layers": len(live),
    }
    if w is not None:
        evidence.update({f"weight std of {w.name}": w.weight_std, "He std": w.he_std, "Xavier std": w.xavier_std})
    grows = ratio > 1
    change = f"{ratio:.3g}x" if grows else (f"{1 / ratio:.3g}x" if ratio > 0 else "to exactly zero")
    return Finding(
        "init_scale_large" if grows else "init_scale_small",
        f"Initialisation scale too {'large' if grows else 'small'}: activations "
        f"{'grow' if grows else 'shrink'} {change} with depth",
        "medium", evidence,
        "Initialise weights with std sqrt(2/fan_in) for ReLU-like activations (He, model.init = 'kaiming') "
        "or sqrt(2/(fan_in+fan_out)) for tanh/sigmoid (Xavier, model.init = 'xavier'), or add normalisation layers.",
        "EECE454 lecture: choose the weight scale so the activation variance stays constant over layers; threshold 10x",
    )  # fmt: skip


def _fractions(per_layer: Sequence[float], during_training: Sequence[float]) -> tuple[float, float]:
    """(mean over the layers at init, worst of that and the short run's readings); 0 when
    nothing was measured."""
    at_init = statistics.fmean(per_layer) if per_layer else 0.0
    return at_init, max([at_init, *during_training])


def saturation(acts: Sequence[ActivationLayer], during_training: Sequence[float] = ()) -> Finding | None:
    """Saturated sigmoid/tanh units, at init or during the short run."""
    sat = [a for a in acts if a.saturated_frac is not None]
    at_init, worst = _fractions([a.saturated_frac for a in sat], during_training)  # type: ignore[misc]
    if worst <= SATURATED_FRAC:
        return None
    evidence: dict[str, object] = {"saturated fraction (worst)": worst, "at init": at_init}
    if sat:
        top = max(sat, key=lambda a: a.saturated_frac or 0.0)
        evidence[f"at init in {top.name}"] = top.saturated_frac
    return Finding(
        "saturated_units", "Saturated sigmoid/tanh units pass almost no gradient", "medium", evidence,
        "Lower the initial weight scale (Xavier init, model.init = 'xavier'), scale the inputs, "
        "add normalisation before the nonlinearity, or use ReLU/GELU in hidden layers.",
        "EECE454 lecture: large init drives tanh/sigmoid outputs to their asymptotes; threshold 20%",
    )


def dead_relus(acts: Sequence[ActivationLayer], during_training: Sequence[float] = ()) -> Finding | None:
    """ReLU units that never fire on a batch, at init or during the short run."""
    relu = [a for a in acts if a.dead_frac is not None]
    at_init, worst = _fractions([a.dead_frac for a in relu], during_training)  # type: ignore[misc]
    if worst <= DEAD_FRAC:
        return None
    evidence: dict[str, object] = {"dead fraction (worst)": worst, "at init": at_init}
    if during_training:
        evidence["during the short run"] = max(during_training)
    return Finding(
        "dead_relus", "Dead ReLUs: many units never activate", "high", evidence,
        "Start ReLU biases small and positive (model.relu_bias = 0.01), use He init, lower the LR, "
        "or use leaky ReLU / GELU.",
        "EECE454 lecture, 'Dying ReLU'; threshold 25% of units",
    )


def loss_at_init(loss: float, num_classes: int | None) -> Finding | None:
    if num_classes is None or num_classes < 2:
        return None
    expected = math.log(num_classes)
    if math.isfinite(loss) and loss <= INIT_LOSS_FACTOR * expected:
        return None
    return Finding(
        "loss_at_init", f"Loss at init is {loss:.3g}, far above log({num_classes}) = {expected:.3g}", "medium",
        {"loss at init": loss, "log(num_classes)": expected},
        "Initial predictions are confidently wrong: shrink the last layer's init (near-zero logits), "
        "and check the input scale.",
        "Karpathy 2019, 'verify loss @ init'; threshold 1.5 x log(C)",
    )


def cannot_overfit(result: OverfitResult | None, dead_units: bool = False) -> Finding | None:
    """``dead_units``: dead ReLUs were found, which explain parameters without a gradient."""
    if result is None:
        return None
    evidence: dict[str, object] = {
        "samples": result.samples, "steps": result.steps,
        "initial loss": result.initial_loss, "best loss": result.best_loss,
    }  # fmt: skip
    fix = "Check the model's forward and the loss: inputs and labels aligned, no detach, the right reduction."
    source = "Karpathy 2019, 'overfit one batch'"
    if not result.has_gradient:
        return Finding(
            "loss_without_gradient", "The loss does not depend on the parameters (no gradient reaches them)",
            "high", evidence, "Look for .detach(), .item(), torch.no_grad() or a numpy round trip between the "
            "model's output and the loss.", source,
        )  # fmt: skip
    if result.accuracy is not None:
        evidence["accuracy on the batch"] = result.accuracy
    if not (result.ratio <= OVERFIT_TARGET) and result.gradient_share < GRADIENT_SHARE_MIN and not dead_units:
        return Finding(
            "loss_without_gradient",
            f"No gradient reaches {1 - result.gradient_share:.0%} of the parameters: the loss is cut off from them",
            "high", {**evidence, "parameters with a gradient": result.gradient_share},
            "Look for .detach(), .item(), .data, torch.no_grad() or a numpy round trip between those parameters "
            "and the loss (the model's output, or a branch of it), or for units that never activate (a functional "
            "F.relu after a large negative bias: the activation probes see only modules).", source,
        )  # fmt: skip
    if not (result.ratio <= OVERFIT_TARGET):
        evidence["best/initial"] = result.ratio
        return Finding(
            "cannot_overfit", f"Cannot overfit one batch of {result.samples} samples", "high", evidence, fix,
            f"{source}; target: {OVERFIT_TARGET:g} x the initial loss within {result.steps} Adam steps",
        )
    if result.accuracy is not None and result.accuracy < ACCURACY_MIN:
        return Finding(
            "loss_ignores_labels", "The loss falls on one batch but its predictions do not match the labels", "high",
            evidence, "The loss does not score what the metric scores: check that the loss uses the batch's labels.",
            f"{source}; accuracy below {ACCURACY_MIN:g} after the loss fell",
        )
    return None


def batchnorm_mode(check: BatchNormCheck | None) -> Finding | None:
    if check is None:
        return None
    evidence = {"BatchNorm modules": ", ".join(check.modules[:4]) + (", ..." if len(check.modules) > 4 else "")}
    if check.updated_in_eval:
        return Finding(
            "batchnorm_train_mode_in_eval", "BatchNorm stays in training mode during evaluation", "high",
            {**evidence, "running stats changed in eval": True},
            "Do not override train()/eval() or call model.train() inside forward or the task's metrics; "
            "evaluation must use the running statistics.",
            "EECE454 lecture: at test time BatchNorm uses the running averages collected during training",
        )
    if not check.updated_in_train:
        return Finding(
            "batchnorm_frozen_in_train", "BatchNorm is frozen (eval mode) during training", "high",
            {**evidence, "running stats changed in training": False},
            "Do not call model.eval() in forward or in the task's loss; training must update the running statistics.",
            "EECE454 lecture: BatchNorm collects running averages of mean and variance during training",
        )
    if check.stats_frozen:
        shown = ", ".join(check.stats_frozen[:4]) + (", ..." if len(check.stats_frozen) > 4 else "")
        return Finding(
            "batchnorm_stats_frozen", "BatchNorm running statistics never move during training", "high",
            {"frozen modules": shown, "of BatchNorm modules": len(check.modules),
             "momentum": sorted({m for m in check.momentum if m is not None}) or "cumulative"},
            "Leave BatchNorm's momentum at its default (0.1; None for a cumulative average) and do not reset or "
            "overwrite running_mean/running_var in forward: evaluation normalises with these statistics, which "
            "still hold their initial values (mean 0, variance 1).",
            "EECE454 lecture: BatchNorm collects running averages of mean and variance during training and uses "
            "them at test time; a training forward here changed the counter but not the averages",
        )
    return None
