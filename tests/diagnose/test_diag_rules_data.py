"""The rules added for the data, the loss and BatchNorm's statistics, on synthetic statistics;
how a flat loss is told from an LR problem; and the order of the findings (causes first)."""

from __future__ import annotations

import math

from trainwell.diagnose import rules, rules_data, rules_train
from trainwell.diagnose import run as diag_run
from trainwell.diagnose.probes import InputStats
from trainwell.diagnose.probes_data import HoldoutResult, OutputStats, SplitCheck
from trainwell.diagnose.probes_train import BatchNormCheck, OverfitResult, RunStats


def holdout(seen: tuple[float, float], unseen: tuple[float, float], best: float = math.nan) -> HoldoutResult:
    return HoldoutResult(128, 60, seen[0], seen[1], unseen[0], unseen[1], best)


def test_labels_that_do_not_match_their_inputs() -> None:
    # memorised (2.31 -> 1.83) while the unseen loss only rose: the labels carry nothing
    f = rules_data.labels_do_not_match(holdout((2.31, 1.83), (2.32, 2.45), best=2.31))
    assert f is not None and f.id == "labels_do_not_match_inputs" and f.severity == "high"
    # real labels: the unseen loss falls with the seen one (healthy digits MLP measured 2.30 -> 0.76)
    assert rules_data.labels_do_not_match(holdout((2.32, 0.65), (2.30, 0.76), best=0.76)) is None
    # overfitting late in the probe: the unseen loss dipped at some point, so it learned something real
    assert rules_data.labels_do_not_match(holdout((2.3, 0.5), (2.3, 2.4), best=1.5)) is None
    # nothing learned at all: the overfit probe's and the LR rules' case, not this one
    assert rules_data.labels_do_not_match(holdout((2.31, 2.30), (2.30, 2.31), best=2.30)) is None


def out(lo: float, hi: float, row_sum: float = math.inf, spread: float = 0.5, **target: float) -> OutputStats:
    return OutputStats([64, 10], lo, hi, 0.3, row_sum, spread, bool(target), **target)


def test_outputs_that_are_probabilities() -> None:
    softmax = out(0.01, 0.4, row_sum=1e-7)
    f = rules_data.outputs_are_probabilities(softmax, overfit_failed=True)
    assert f is not None and "softmax" in f.title
    assert math.isclose(f.evidence["lowest cross-entropy on probabilities"], math.log(math.e + 9) - 1)
    assert "sigmoid" in rules_data.outputs_are_probabilities(out(0.2, 0.9), True).title  # type: ignore[union-attr]
    # probabilities into a loss that expects them (NLL on log p, BCELoss): the model fits, no finding
    assert rules_data.outputs_are_probabilities(softmax, overfit_failed=False) is None
    assert rules_data.outputs_are_probabilities(out(-3.0, 4.0), overfit_failed=True) is None  # logits


def test_regression_targets_far_from_the_outputs() -> None:
    far = out(-1, 1, target_rms=1000.0, target_mean=1000.0, target_std=30.0)
    f = rules_data.target_scale(far)
    assert f is not None and f.id == "target_scale" and math.isclose(f.evidence["ratio"], 1000.0 / 0.3)
    assert rules_data.target_scale(out(-1, 1, target_rms=1.0, target_mean=0.0, target_std=1.0)) is None
    assert rules_data.target_scale(out(-1, 1, target_rms=1e-4, target_mean=0.0, target_std=1e-4)) is not None
    assert rules_data.target_scale(out(-1, 1)) is None  # class labels, no regression targets


def test_output_the_same_for_every_input() -> None:
    same = out(-0.1, 0.1, spread=0.0)
    assert rules_data.output_ignores_input(same).id == "output_ignores_input"  # type: ignore[union-attr]
    assert rules_data.output_ignores_input(same, first_spread=0.0) is not None  # lost before the first layer
    assert rules_data.output_ignores_input(same, first_spread=0.8) is None  # lost deeper: the depth profile says where
    assert rules_data.output_ignores_input(out(-0.1, 0.1, spread=0.3)) is None


def test_evaluation_split_against_training() -> None:
    assert rules_data.eval_shares_samples(SplitCheck(1617, 180, 0)) is None
    assert rules_data.eval_shares_samples(SplitCheck(1617, 180, 1)) is None  # one duplicate in the source
    f = rules_data.eval_shares_samples(SplitCheck(1617, 180, 90))
    assert f is not None and f.title.startswith("50% of the evaluation samples")
    assert rules_data.eval_inputs_differ(SplitCheck(1617, 180, 0, 0.05, 1.02)) is None
    assert rules_data.eval_inputs_differ(SplitCheck(1617, 180, 0, 4.2, 5.1)).id == "eval_inputs_differ"  # type: ignore[union-attr]
    assert rules_data.eval_inputs_differ(SplitCheck(1617, 180, 0, 0.1, 0.2)) is not None  # squeezed spread
    assert rules_data.eval_inputs_differ(SplitCheck(1617, 180, 0)) is None  # token ids: no statistics


def test_batchnorm_statistics_that_never_move() -> None:
    frozen = BatchNormCheck(["bn1", "bn2"], True, False, ["bn1", "bn2"], [0.0, 0.0])
    f = rules.batchnorm_mode(frozen)
    assert f is not None and f.id == "batchnorm_stats_frozen" and f.evidence["momentum"] == [0.0]
    assert rules.batchnorm_mode(BatchNormCheck(["bn1"], True, False, [], [0.1])) is None


def run_stats(losses: list[float], **kw: object) -> RunStats:
    r = RunStats(steps=len(losses), lr=3e-3, batch_size=64, optimizer="adamw", clip_norm=1.0, status="completed")
    r.losses = losses
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_a_flat_loss_is_never_too_high() -> None:
    flat = [2.31, 2.30, 2.31, 2.32, 2.30, 2.31, 2.31, 2.32]  # the end a hair above the start
    assert rules_train.lr_too_high(run_stats(flat)) is None
    rising = [2.3, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9]
    assert rules_train.lr_too_high(run_stats(rising)).id == "lr_too_high"  # type: ignore[union-attr]


def test_most_parameters_without_gradient_is_the_cause_not_the_learning_rate() -> None:
    cut_off = OverfitResult(8, 200, 2.31, 2.30, 2.30, True, 0.1, gradient_share=0.0013)
    f = rules.cannot_overfit(cut_off)
    assert f is not None and f.id == "loss_without_gradient" and "100% of the parameters" in f.title
    # dead ReLUs also leave parameters without gradient: then they are the cause
    assert rules.cannot_overfit(cut_off, dead_units=True).id == "cannot_overfit"  # type: ignore[union-attr]
    fits = OverfitResult(8, 12, 2.31, 0.2, 0.2, True, 1.0, gradient_share=0.001)  # a model that fits is fine
    assert rules.cannot_overfit(fits) is None


def test_causes_are_listed_before_the_training_symptoms() -> None:
    x255 = InputStats(512, 64, 0.0, 255.0, 0.01, -600.0, 900.0)
    diverging = run_stats([2.3, 5.0, 9.0, 20.0, 15.0, 18.0, 30.0, 25.0])
    found = [f.id for f in diag_run.apply_rules(diag_run.Probes(inputs=x255, run=diverging))]
    assert found[0] == "inputs_not_scaled" and "lr_too_high" in found  # medium cause before the high symptom


def test_low_notes_come_after_every_high_or_medium_finding() -> None:
    diverging = run_stats([2.3, 5.0, 9.0, 20.0, 15.0, 18.0, 30.0, 25.0],
                          outliers_max_std={"head": [(1, 5.0), (41, 80.0)]})  # growing outliers: a low note
    found = diag_run.apply_rules(diag_run.Probes(run=diverging))
    assert [f.id for f in found] == ["lr_too_high", "outliers_growing"]
    assert [f.severity for f in found] == ["high", "low"]


def test_a_model_that_cannot_learn_drifting_up_is_not_an_lr_problem() -> None:
    drifting = [2.30, 2.30, 2.31, 2.33, 2.34, 2.35, 2.36, 2.37]  # 3% up, no divergence
    assert rules_train.lr_too_high(run_stats(drifting)) is not None  # a model that learns: the LR
    assert rules_train.lr_too_high(run_stats(drifting), can_learn=False) is None
    assert rules_train.lr_too_high(run_stats([2.30, 2.31, 2.30, 2.31], alpha=[1.8, 1.9, 1.7]), can_learn=False) is None
    diverging = [2.3, 5.0, 9.0, 20.0, 15.0, 18.0, 30.0, 25.0]
    assert rules_train.lr_too_high(run_stats(diverging), can_learn=False) is not None
