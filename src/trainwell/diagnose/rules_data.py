"""Rules on the data: input scale and centring, and what the data probes (probes_data.py) saw:
labels that do not go with their inputs, outputs that are already probabilities, regression
targets far from the outputs' scale, evaluation samples shared with training, an evaluation
split whose inputs differ from training's.
"""

from __future__ import annotations

import math

from trainwell.diagnose.findings import Finding
from trainwell.diagnose.probes import InputStats
from trainwell.diagnose.probes_data import HoldoutResult, OutputStats, SplitCheck

INPUT_SCALE = 10.0
"""Inputs not scaled: the input standard deviation is more than this factor away from 1.
Default inits assume unit-scale inputs (Xavier/He derivations); a factor 10 scales every
first-layer pre-activation by 10 (Cockpit's mis-scaled-data example multiplies by 255)."""

INPUT_OFFSET = 1.0
"""Inputs not centred: the per-feature means are larger (RMS) than the per-feature spread.
All-positive inputs make every weight's gradient share a sign and the steps zig-zag (EECE454
lecture, 'Data preprocessing'); 1 is where the shared offset outweighs the signal."""


def inputs_not_scaled(stats: InputStats | None) -> Finding | None:
    if stats is None or not math.isfinite(stats.std) or 1 / INPUT_SCALE <= stats.std <= INPUT_SCALE:
        return None
    return Finding(
        "inputs_not_scaled", f"Inputs not scaled: their standard deviation is {stats.std:.3g} (expected ~1)", "medium",
        {"input std": stats.std, "input min": stats.minimum, "input max": stats.maximum, "samples": stats.samples},
        "Divide the inputs by their standard deviation (or by the pixel range, e.g. 255) computed on the training split.",
        "Xavier/He inits assume unit-scale inputs; Cockpit's x255 example; threshold 10x",
    )


def inputs_not_centred(stats: InputStats | None) -> Finding | None:
    if stats is None or not math.isfinite(stats.offset) or stats.offset <= INPUT_OFFSET:
        return None
    return Finding(
        "inputs_not_centred", "Inputs not centred: a shared offset outweighs their variation", "medium",
        {"per-feature mean / spread (RMS)": stats.offset, "input mean": stats.mean, "input std": stats.std},
        "Subtract the per-feature (or per-channel) mean of the training split from the inputs.",
        "EECE454 lecture, 'Data preprocessing': all-positive inputs make gradient steps zig-zag; threshold 1",
    )


SEEN_DROP_MIN = 0.1
"""Label probe: the seen samples' loss must fall by a tenth for the probe to say anything
(a model that learns nothing at all is the overfit probe's and the LR rules' case; shuffled
labels measured here fell 0.21-0.64 in the probe's 60 steps)."""

CARRY_MIN = 0.2
"""Label probe: real labels carry what is learned to unseen samples of the same task: their
loss falls, at its lowest, by at least a fifth as much as the seen samples' (measured here on
13 healthy trainings: 0.5 or more of it; shuffled labels: at most 0.03, the unseen loss rises)."""

OUTPUT_SPREAD_MIN = 1e-6
"""Every sample gets the same output when its spread over the batch is below a millionth of
its size: float rounding, not a signal."""

TARGET_SCALE = 100.0
"""Regression targets whose RMS is more than 100x away from the output's at init: a default
init gives outputs of RMS ~0.1-1, so the last layer must grow its weights ~100x before the
loss can fall, which Adam at 1e-3 needs ~1e5 steps for, and the gradient is dominated by
the scale error (standardised targets measured here sit within 5x)."""

PROB_ROW_SUM = 1e-3
"""Outputs whose rows sum to 1 within this (softmax), or all in [0, 1] (sigmoid), are
probabilities."""

SHARED_FRAC = 0.01
"""Evaluation samples identical to a training sample: above 1% of the evaluation split, the
evaluation measures memory rather than generalisation (independent splits of real data share
none or a few, from duplicates in the source)."""

SPLIT_SHIFT = 1.0
"""Evaluation inputs shifted by more than one training spread (RMS over features), or spread
more than 3x wider or narrower: the evaluation split was preprocessed differently (not
standardised with the training statistics, another unit or scale)."""
SPLIT_SCALE = 3.0


def labels_do_not_match(result: HoldoutResult | None) -> Finding | None:
    """The model memorises the samples it trains on
    while nothing carries to unseen ones."""
    if result is None or not (result.seen_drop >= SEEN_DROP_MIN):
        return None
    unseen = result.unseen_drop
    if not math.isfinite(unseen) or unseen > CARRY_MIN * result.seen_drop:
        return None
    evidence: dict[str, object] = {
        "samples trained on": result.samples, "steps": result.steps,
        "loss on them (before -> after)": f"{result.seen_before:.3g} -> {result.seen_after:.3g}",
        "loss on as many unseen training samples": f"{result.unseen_before:.3g} -> {result.unseen_after:.3g}",
    }  # fmt: skip
    if result.seen_accuracy is not None:
        evidence["accuracy seen / unseen"] = f"{result.seen_accuracy:.2f} / {result.unseen_accuracy:.2f}"
    return Finding(
        "labels_do_not_match_inputs",
        "Labels do not go with their inputs: the model memorises the samples it sees, nothing carries to new ones",
        "high", evidence,
        "Check that each label stays with its input: a shuffle, sort or filter applied to the inputs and not "
        "the labels (or the other way round), a misaligned join or an off-by-one index.",
        f"Zhang et al. 2017 (random labels are memorised, never generalised); threshold: unseen loss falls "
        f"less than {CARRY_MIN:g}x as much as the seen",
    )


def outputs_are_probabilities(out: OutputStats | None, overfit_failed: bool) -> Finding | None:
    """Probabilities into a loss that applies (log-)softmax
    or sigmoid itself: the loss has a floor well above 0, so the model cannot fit."""
    if out is None or not overfit_failed:
        return None
    softmax = out.row_sum_error <= PROB_ROW_SUM
    if not (softmax or out.in_unit_interval):
        return None
    evidence: dict[str, object] = {"output min": out.minimum, "output max": out.maximum}
    if softmax:
        classes = out.shape[-1]
        evidence["rows sum to 1 within"] = out.row_sum_error
        evidence["lowest cross-entropy on probabilities"] = math.log(math.e + classes - 1) - 1
    kind = "softmax" if softmax else "sigmoid"
    return Finding(
        "outputs_are_probabilities",
        f"The model outputs probabilities ({kind} at the end) into a loss that applies {kind} again",
        "high", evidence,
        f"Return logits: remove the final {kind} from the model (F.cross_entropy and BCEWithLogitsLoss apply it), "
        "or keep it and use NLLLoss on log-probabilities / BCELoss.",
        "Cross-entropy on probabilities cannot fall below log(e + C - 1) - 1 (C classes): the overfit probe "
        "stalls there",
    )


def target_scale(out: OutputStats | None) -> Finding | None:
    """Regression targets (float, as many as the outputs) far from the outputs' scale."""
    if out is None or not out.target_float or not math.isfinite(out.target_rms) or out.rms <= 0:
        return None
    ratio = out.target_rms / out.rms
    if 1 / TARGET_SCALE <= ratio <= TARGET_SCALE:
        return None
    return Finding(
        "target_scale",
        f"Regression targets are {ratio:.3g}x the outputs' scale" if ratio > 1 else
        f"Regression targets are {1 / ratio:.3g}x smaller than the outputs",
        "high", {"target mean": out.target_mean, "target std": out.target_std, "target RMS": out.target_rms,
                 "output RMS at init": out.rms, "ratio": ratio},
        "Standardise the targets with the training split's mean and std (and undo it on predictions), or set "
        "the last layer's bias to the target mean and scale its weights to the target std.",
        f"Default inits give outputs of RMS ~0.1-1; threshold {TARGET_SCALE:g}x",
    )


def eval_shares_samples(check: SplitCheck | None) -> Finding | None:
    """Evaluation samples identical to training samples."""
    if check is None or check.eval_samples == 0 or check.shared <= SHARED_FRAC * check.eval_samples:
        return None
    frac = check.shared / check.eval_samples
    return Finding(
        "eval_shares_samples", f"{frac:.0%} of the evaluation samples are also in the training split",
        "medium", {"shared samples": check.shared, "evaluation samples": check.eval_samples,
                   "training samples read": check.train_samples},
        "Split before any augmentation or duplication, and drop evaluation samples identical to a training one "
        "(deduplicate by content): the evaluation now rewards memorising.",
        f"A held-out split must not contain training samples; threshold {SHARED_FRAC:.0%} identical inputs",
    )


def eval_inputs_differ(check: SplitCheck | None) -> Finding | None:
    """The evaluation inputs' mean or spread far from training's."""
    if check is None or not math.isfinite(check.shift):
        return None
    if check.shift <= SPLIT_SHIFT and 1 / SPLIT_SCALE <= check.scale <= SPLIT_SCALE:
        return None
    return Finding(
        "eval_inputs_differ", "The evaluation inputs are distributed unlike the training inputs", "medium",
        {"mean shift (training spreads)": check.shift, "spread ratio eval/train": check.scale,
         "evaluation samples": check.eval_samples},
        "Preprocess both splits the same way: normalise the evaluation inputs with the training split's mean "
        "and std (not their own, and not skipped), in the same units.",
        f"Splits of one distribution differ by sampling noise only; thresholds: shift {SPLIT_SHIFT:g} spread, "
        f"spread ratio {SPLIT_SCALE:g}x",
    )


def output_ignores_input(out: OutputStats | None, first_spread: float | None = None) -> Finding | None:
    """The output is the same for every sample of a batch at init: the input does not reach it.
    ``first_spread``: the first activation layer's input spread (probes.ActivationLayer.pre_std);
    when the signal still varies there, it is lost deeper (dead, saturated or shrinking layers:
    the depth profile's findings), and this finding would only repeat them."""
    if out is None or not math.isfinite(out.sample_spread) or out.sample_spread > OUTPUT_SPREAD_MIN:
        return None
    if first_spread is not None and first_spread > OUTPUT_SPREAD_MIN:
        return None
    return Finding(
        "output_ignores_input", "The model gives every sample the same output: its input does not reach the output",
        "high", {"output spread over the batch / output RMS": out.sample_spread, "output shape": out.shape},
        "Check the forward: the input variable is used (not overwritten, not a zeros/ones placeholder, not "
        "detached into a constant), nothing averages over the batch dimension, and a layer's units are not all "
        "dead (a functional F.relu after a large negative bias: the activation probes see only modules).",
        "A function of its input varies with it; threshold: spread below 1e-6 of the output's size",
    )
