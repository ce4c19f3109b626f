"""Rules on the short run: the learning rate (too high, too low), clipping, and the batch size
against the gradient noise scale. Sources as in rules.py: the Google Tuning Playbook
(clipping, instability), Cockpit (Alpha), Karpathy 2019 (update/parameter ratio ~1e-3),
McCandlish et al. 2018 (gradient noise scale), Cohen et al. 2021 (edge of stability, 2/lr).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from trainwell.diagnose.findings import Finding
from trainwell.diagnose.probes_train import RunStats, median

LOSS_RISE = 1.5
"""LR too high: the loss climbs above 1.5 x its first value during the short run (the guards'
divergence factor: far above step-to-step noise, well below a full divergence)."""

LOSS_FLAT = 0.02
"""A flat loss is never 'too high': the end of the run must sit 2% above its start, beyond the
step-to-step noise of a loss that does not move (a model cut off from its loss went 2.31 ->
2.31 and was told its LR was too high)."""

ALPHA_HIGH = 1.0
"""Cockpit: alpha > 1 means the step landed higher than it started (overshooting beyond the
opposite wall of the valley); a median above 1 means most steps do so."""

ALPHA_LOW = -0.5
"""Cockpit: alpha = -1 means no step at all; a median below -0.5 means steps cover only a
small part of the way to the valley floor."""

UPDATE_RATIO_LOW = 1e-4
"""LR too low: the update moves the weights by less than 1e-4 of their norm per step, ten
times below Karpathy's healthy ~1e-3 (the digits default measures ~1e-2 in its first steps)."""

LOSS_DROP_MIN = 0.05
"""Without Alpha (a model it cannot measure), LR too low also needs the loss to fall by less
than 5% over the short run."""

NOISE_FACTOR = 10.0
"""Batch size far from the gradient noise scale B_simple: more than 10x either way. At
B = 10 B_noise a run needs ~11x the minimum number of examples, at B = B_noise / 10 ~11x the
minimum number of steps (McCandlish et al. 2018, eq. 2.11); B_simple grows as the loss falls,
so a short run at the start reads it low."""

CLIP_FRAC = 0.5
"""Tuning Playbook: clipping active on more than half the steps means the LR should be
lowered instead."""
CLIP_HEAVY = 4.0
"""Clipping matters when it shrinks the gradient a lot: a median norm over 4x the threshold
on the clipped steps cuts the step size 4x, a hidden change of the learning rate. Below it,
clipping most steps is a mild rescale: with the fixed default of 1.0, healthy small models
(a LayerNorm + GELU MLP, a small CNN, both training well) clipped on 100% of steps, which
the Playbook's rule, written for a threshold near the 90th percentile of the norms, reads as
a problem; it is then reported as low, not medium."""


def lr_too_high(run: RunStats | None, can_learn: bool = True) -> Finding | None:
    """``can_learn``: the overfit probe fitted its batch. A model that cannot (vanishing
    gradients, an output cut off from its input) drifts on a flat loss: its loss ending a
    little above its start, or Alpha (a parabola fitted to noise, median 1.8 on a deep sigmoid
    net whose loss went 2.30 -> 2.31), says nothing about the LR; only a divergence (NaN, a
    1.5x rise) or the sharpness count then."""
    if run is None or not run.losses:
        return None
    first = run.losses[0]
    finite = [v for v in run.losses if math.isfinite(v)]
    peak = max(finite) if finite else math.inf
    q = max(1, len(run.losses) // 4)
    start, end = statistics.fmean(run.losses[:q]), statistics.fmean(run.losses[-q:])
    alpha = median(run.alpha)
    sharp = max(run.sharpness) if run.sharpness else math.nan
    reasons = []
    if run.status == "halted" or len(finite) < len(run.losses):
        reasons.append("the loss became NaN/Inf")
    if peak > LOSS_RISE * first:
        reasons.append(f"the loss rose to {peak / first:.3g}x its first value")
    if end > start * (1 + LOSS_FLAT) and can_learn:
        reasons.append("the loss was higher at the end than at the start")
    if len(run.alpha) >= 3 and alpha > ALPHA_HIGH and can_learn:
        reasons.append(f"median Alpha {alpha:.2g} > 1 (steps overshoot the valley)")
    if math.isfinite(sharp) and sharp * run.lr > 2:
        reasons.append(f"sharpness {sharp:.3g} > 2/lr = {2 / run.lr:.3g} (beyond the edge of stability)")
    if not reasons:
        return None
    evidence: dict[str, object] = {"lr": run.lr, "first loss": first, "peak loss": peak, "last-quarter loss": end}
    if run.alpha:
        evidence["median Alpha"] = alpha
    if math.isfinite(sharp):
        evidence["sharpness"] = sharp
    evidence["why"] = "; ".join(reasons)
    return Finding(
        "lr_too_high", f"Learning rate too high ({run.lr:g}): {reasons[0]}", "high", evidence,
        "Lower optim.lr by 3-10x (trainwell lr-find suggests one), or lengthen the warmup.",
        "Tuning Playbook (loss rising = instability); Cockpit (Alpha > 1); Cohen et al. 2021 (2/lr, plain SGD)",
    )


def lr_too_low(run: RunStats | None) -> Finding | None:
    if run is None or not run.update_ratio or not run.losses:
        return None
    ratio = median(run.update_ratio)
    if not (ratio < UPDATE_RATIO_LOW):
        return None
    first, last = run.losses[0], run.losses[-1]
    drop = (first - last) / abs(first) if first else 0.0
    alpha = median(run.alpha)
    if run.alpha and math.isfinite(alpha):
        if alpha >= ALPHA_LOW:
            return None
    elif drop >= LOSS_DROP_MIN:
        return None
    evidence: dict[str, object] = {"lr": run.lr, "median update/parameter ratio": ratio, "loss drop": drop}
    if run.alpha:
        evidence["median Alpha"] = alpha
    return Finding(
        "lr_too_low", f"Learning rate too low ({run.lr:g}): updates barely move the weights", "medium", evidence,
        "Raise optim.lr (trainwell lr-find suggests one); healthy updates move the weights by ~1e-3 of their norm per step.",
        "Cockpit (Alpha near -1, tiny updates with a normal gradient); Karpathy's ~1e-3 update ratio; threshold 1e-4",
    )


def batch_vs_noise(batch_size: int, noise_scale: float | None) -> Finding | None:
    """``noise_scale`` <= 0: the gradient signal is still below the noise of one batch."""
    if noise_scale is None or not math.isfinite(noise_scale):
        return None
    evidence = {"batch size": batch_size, "gradient noise scale B_simple": noise_scale}
    if noise_scale <= 0 or batch_size * NOISE_FACTOR < noise_scale:
        return Finding(
            "batch_below_noise", "Batch size far below the gradient noise scale: each step is mostly noise", "medium",
            evidence,
            "Raise train.batch_size (or train.accumulate) towards the noise scale and re-tune the LR.",
            "McCandlish et al. 2018: B_simple is the batch size where signal and noise balance; threshold 10x",
        )
    if batch_size > NOISE_FACTOR * noise_scale:
        return Finding(
            "batch_above_noise", "Batch size far above the gradient noise scale: compute per sample is wasted", "low",
            evidence,
            "A smaller train.batch_size would make as much progress per sample (the noise scale grows as the loss "
            "falls, so re-measure later in training before changing it).",
            "McCandlish et al. 2018: beyond B_simple a larger batch buys few steps; threshold 10x",
        )
    return None


def clipping_most_steps(clipped: Sequence[float], lr_low: bool = False, grad_norms: Sequence[float] = (),
                        clip_norm: float = 0.0) -> Finding | None:
    """Over the second half of the short run (the first steps of any run clip more while the
    loss falls fast); not when the LR is too low (the gradient then stays large because the
    model does not train, and lowering the LR would be wrong). Medium when clipping shrinks
    the clipped steps' gradients CLIP_HEAVY-fold or more (or their norms are unknown), low
    when it only trims them."""
    half = len(clipped) // 2
    tail = list(clipped[half:])
    if lr_low or len(tail) < 4:
        return None
    frac = sum(1 for c in tail if c > 0) / len(tail)
    if frac <= CLIP_FRAC:
        return None
    norms = [n for n, c in zip(grad_norms[half:], tail, strict=False) if c > 0 and math.isfinite(n)]
    shrink = median(norms) / clip_norm if norms and clip_norm > 0 else None
    evidence: dict[str, object] = {"clipped fraction (second half of the short run)": frac, "steps": len(tail)}
    if shrink is not None:
        evidence["median gradient norm / clip.max_norm on clipped steps"] = shrink
    heavy = shrink is None or shrink >= CLIP_HEAVY
    return Finding(
        "clipping_most_steps",
        f"Gradient clipping is active on {frac:.0%} of steps"
        + ("" if shrink is None else f", shrinking the gradient {shrink:.3g}x"),
        "medium" if heavy else "low", evidence,
        "Lower optim.lr instead of relying on clipping, or set clip.max_norm near the 90th percentile "
        "of unclipped gradient norms." if heavy else
        "Harmless while the loss falls: clipping only trims the steps. To keep clipping for spikes "
        "only, set clip.max_norm near the 90th percentile of the gradient norms.",
        "Tuning Playbook: more than 50% of steps clipped means the LR should be lowered; "
        f"reported as medium when it shrinks the gradient {CLIP_HEAVY:g}x or more",
    )

