"""Each rule on synthetic statistics: it fires when it should and stays quiet otherwise."""

from __future__ import annotations

import json
import math

import pytest

from trainwell.diagnose import rules, rules_data, rules_train
from trainwell.diagnose.findings import Finding, write_findings
from trainwell.diagnose.probes import ActivationLayer, InputStats, WeightedLayer
from trainwell.diagnose.probes_train import BatchNormCheck, OverfitResult, RunStats


def w(name: str, grad: float, std: float = 0.1) -> WeightedLayer:
    return WeightedLayer(name, 64, 64, std, 0.177, 0.125, grad)


def a(name: str, pre: float, kind: str = "relu", dead: float | None = 0.0, sat: float | None = None) -> ActivationLayer:
    return ActivationLayer(name, kind, pre, dead, sat)


def run(**kw: object) -> RunStats:
    base = dict(steps=40, lr=1e-3, batch_size=64, optimizer="adamw", clip_norm=1.0, status="completed")
    r = RunStats(**{**base, **{k: v for k, v in kw.items() if k in base}})  # type: ignore[arg-type]
    for k, v in kw.items():
        if k not in base:
            setattr(r, k, v)
    return r


HEALTHY_LOSSES = [2.3 - 0.04 * i for i in range(40)]


def test_gradient_flow() -> None:
    assert rules.gradient_flow([w("a", 1e-3), w("b", 2e-3), w("c", 3e-3)]) is None
    f = rules.gradient_flow([w("a", 1e-9), w("b", 1e-6), w("c", 1e-3)])
    assert f is not None and f.id == "vanishing_gradients" and f.evidence["first layer"] == "a"
    assert rules.gradient_flow([w("a", 10.0), w("b", 1.0), w("c", 0.01)]).id == "exploding_gradients"  # type: ignore[union-attr]
    # zero-initialised layers and layers with no gradient behind them are not evidence
    assert rules.gradient_flow([w("a", 1e-3), w("z", 0.0), w("b", 1e-3, std=0.0), w("c", 2e-3)]) is None


def test_init_scale() -> None:
    layers = [w("a", 1e-3), w("b", 1e-3), w("c", 1e-3)]
    assert rules.init_scale([a("1", 0.5), a("2", 0.4), a("3", 0.3)], layers) is None
    small = rules.init_scale([a("1", 0.5), a("2", 0.05), a("3", 0.005)], layers)
    assert small is not None and small.id == "init_scale_small" and "He std" in small.evidence
    assert rules.init_scale([a("1", 1.0), a("2", 5.0), a("3", 50.0)], layers).id == "init_scale_large"  # type: ignore[union-attr]


def test_init_scale_when_the_last_activations_are_all_zero() -> None:
    """Every unit of the last layer dead (or a signal shrunk to exactly 0): a finding, not a
    ZeroDivisionError (which ended a user's diagnosis in a traceback)."""
    layers = [w("a", 1e-3), w("b", 1e-3), w("c", 1e-3)]
    f = rules.init_scale([a("1", 0.5), a("2", 1e-4), a("3", 0.0)], layers)
    assert f is not None and f.id == "init_scale_small" and "shrink to exactly zero" in f.title


def test_a_rule_that_fails_is_a_low_finding_and_the_others_still_run(monkeypatch) -> None:
    from trainwell.diagnose import run as diag_run
    from trainwell.diagnose.probes import DepthProfile

    def broken(*args, **kwargs):
        raise ValueError("odd statistic")

    monkeypatch.setattr(rules, "saturation", broken)
    profile = DepthProfile(2.3, [a("1", 0.5)], [w("a", 1e-9), w("b", 1e-6), w("c", 1e-3)])
    found = diag_run.apply_rules(diag_run.Probes(profile=profile, num_classes=10))
    ids = [f.id for f in found]
    assert "vanishing_gradients" in ids  # the other rules ran
    broken_finding = next(f for f in found if f.id == "could_not_check_broken")
    assert broken_finding.severity == "low" and "ValueError: odd statistic" in broken_finding.title


def test_saturation_and_dead_relus() -> None:
    tanh = [a("1", 1.0, "tanh", None, 0.5), a("2", 1.0, "tanh", None, 0.6)]
    assert rules.saturation(tanh).id == "saturated_units"  # type: ignore[union-attr]
    assert rules.saturation([a("1", 1.0, "tanh", None, 0.01)]) is None
    assert rules.saturation([a("1", 1.0, "tanh", None, 0.01)], during_training=[0.4]) is not None
    assert rules.dead_relus([a("1", 1.0, dead=0.6), a("2", 1.0, dead=0.9)]).id == "dead_relus"  # type: ignore[union-attr]
    assert rules.dead_relus([a("1", 1.0, dead=0.0), a("2", 1.0, dead=0.1)]) is None
    assert rules.dead_relus([a("1", 1.0, dead=0.0)], during_training=[0.5]) is not None


def stats(mean: float, std: float, offset: float) -> InputStats:
    return InputStats(256, 64, mean, std, offset, mean - 2 * std, mean + 2 * std)


def test_inputs() -> None:
    assert rules_data.inputs_not_scaled(stats(0.0, 1.0, 0.1)) is None
    assert rules_data.inputs_not_scaled(stats(0.0, 250.0, 0.1)).id == "inputs_not_scaled"  # type: ignore[union-attr]
    assert rules_data.inputs_not_scaled(stats(0.0, 0.001, 0.1)) is not None
    assert rules_data.inputs_not_centred(stats(0.0, 1.0, 0.1)) is None
    assert rules_data.inputs_not_centred(stats(0.3, 0.37, 1.48)).id == "inputs_not_centred"  # type: ignore[union-attr]
    assert rules_data.inputs_not_scaled(None) is None and rules_data.inputs_not_centred(None) is None


def test_loss_at_init() -> None:
    assert rules.loss_at_init(2.4, 10) is None
    assert rules.loss_at_init(8.0, 10).id == "loss_at_init"  # type: ignore[union-attr]
    assert rules.loss_at_init(math.nan, 10) is not None
    assert rules.loss_at_init(8.0, None) is None


def test_lr_too_high() -> None:
    assert rules_train.lr_too_high(run(losses=HEALTHY_LOSSES, alpha=[0.1, 0.3, -0.2])) is None
    spike = rules_train.lr_too_high(run(losses=[2.3, 9.0, 4.0] + HEALTHY_LOSSES[20:]))
    assert spike is not None and spike.id == "lr_too_high" and "rose" in spike.evidence["why"]
    assert rules_train.lr_too_high(run(losses=HEALTHY_LOSSES, alpha=[1.5, 2.0, 1.2, 0.9])) is not None
    assert rules_train.lr_too_high(run(losses=[2.3, 2.2, math.nan], status="halted")) is not None
    # plain SGD beyond the edge of stability: sharpness 300 > 2 / 0.1
    assert rules_train.lr_too_high(run(losses=HEALTHY_LOSSES, lr=0.1, sharpness=[300.0])) is not None
    assert rules_train.lr_too_high(run(losses=HEALTHY_LOSSES, lr=0.1, sharpness=[10.0])) is None


def test_lr_too_low() -> None:
    flat = [2.3] * 40
    assert rules_train.lr_too_low(run(losses=flat, update_ratio=[1e-6] * 4, alpha=[-0.99, -0.98, -1.0])) is not None
    assert rules_train.lr_too_low(run(losses=HEALTHY_LOSSES, update_ratio=[1e-2] * 4, alpha=[0.1, 0.2])) is None
    # tiny updates but steps that reach the valley floor: a converged run, not a slow one
    assert rules_train.lr_too_low(run(losses=flat, update_ratio=[1e-6] * 4, alpha=[0.0, 0.1])) is None
    # without Alpha: a loss that barely moves
    assert rules_train.lr_too_low(run(losses=flat, update_ratio=[1e-6] * 4)) is not None
    assert rules_train.lr_too_low(run(losses=HEALTHY_LOSSES, update_ratio=[1e-6] * 4)) is None


def test_batch_vs_noise() -> None:
    assert rules_train.batch_vs_noise(64, 43.0) is None
    assert rules_train.batch_vs_noise(1024, 25.0).id == "batch_above_noise"  # type: ignore[union-attr]
    assert rules_train.batch_vs_noise(2, 100.0).id == "batch_below_noise"  # type: ignore[union-attr]
    assert rules_train.batch_vs_noise(2, -5.0).id == "batch_below_noise"  # type: ignore[union-attr]
    assert rules_train.batch_vs_noise(64, None) is None


def test_cannot_overfit() -> None:
    assert rules.cannot_overfit(OverfitResult(8, 10, 2.3, 0.1, 0.1, True, 1.0)) is None
    assert rules.cannot_overfit(OverfitResult(8, 200, 2.3, 2.2, 2.2, True, 0.25)).id == "cannot_overfit"  # type: ignore[union-attr]
    assert rules.cannot_overfit(OverfitResult(8, 0, 2.3, 2.3, 2.3, False)).id == "loss_without_gradient"  # type: ignore[union-attr]
    assert rules.cannot_overfit(OverfitResult(8, 12, 2.3, 0.01, 0.01, True, 0.125)).id == "loss_ignores_labels"  # type: ignore[union-attr]


def test_batchnorm_mode() -> None:
    assert rules.batchnorm_mode(BatchNormCheck(["bn"], True, False)) is None
    assert rules.batchnorm_mode(BatchNormCheck(["bn"], True, True)).id == "batchnorm_train_mode_in_eval"  # type: ignore[union-attr]
    assert rules.batchnorm_mode(BatchNormCheck(["bn"], False, False)).id == "batchnorm_frozen_in_train"  # type: ignore[union-attr]
    assert rules.batchnorm_mode(None) is None


def test_clipping() -> None:
    assert rules_train.clipping_most_steps([1.0] * 10 + [0.0] * 30) is None  # the first steps clip more
    assert rules_train.clipping_most_steps([1.0] * 40).id == "clipping_most_steps"  # type: ignore[union-attr]
    assert rules_train.clipping_most_steps([1.0] * 40, lr_low=True) is None


def test_clipping_that_only_trims_is_low_and_heavy_clipping_medium() -> None:
    """The false alarm of a healthy small model clipping every step at the default 1.0 by a
    factor of ~1.5: low. A median norm 10x the threshold: the step is cut 10x, medium."""
    trims = rules_train.clipping_most_steps([1.0] * 40, grad_norms=[1.5] * 40, clip_norm=1.0)
    assert trims is not None and trims.severity == "low" and "shrinking the gradient 1.5x" in trims.title
    heavy = rules_train.clipping_most_steps([1.0] * 40, grad_norms=[10.0] * 40, clip_norm=1.0)
    assert heavy is not None and heavy.severity == "medium"
    assert heavy.evidence["median gradient norm / clip.max_norm on clipped steps"] == 10.0
    # only the clipped steps of the second half count
    mixed = rules_train.clipping_most_steps([0.0] * 20 + [1.0] * 20, grad_norms=[50.0] * 20 + [2.0] * 20, clip_norm=1.0)
    assert mixed is not None and mixed.severity == "low"


def test_finding_json(tmp_path) -> None:  # noqa: ANN001
    f = Finding("x", "A title", "high", {"ratio": math.inf, "layer": "fc1"}, "do this", "a paper")
    path = write_findings(tmp_path, [f])
    data = json.loads(path.read_text())
    assert data == [{"id": "x", "title": "A title", "severity": "high", "evidence": {"ratio": "inf", "layer": "fc1"},
                     "fix": "do this", "source": "a paper"}]
    assert "[high] A title" in f.describe() and "fix: do this" in f.describe()
    with pytest.raises(ValueError, match="severity"):
        Finding("x", "t", "catastrophic")
