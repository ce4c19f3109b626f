"""End to end: a broken model for each finding yields that finding and no unrelated alarm;
a healthy model yields none. Each diagnosis takes well under a second to ~2 s on a 2-core CPU."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from diag_helpers import AlwaysTrainBN, ArrayTask, config, digits_arrays, mlp
from torch import nn

from trainwell.diagnose import diagnose
from trainwell.tasks.base import Task


def ids(task: Task, tmp_path: Path, **sets: object) -> set[str]:
    d = diagnose(config(**sets), task=task, run_dir=tmp_path, steps=40)
    written = json.loads((tmp_path / "findings.json").read_text())
    assert [f["id"] for f in written] == [f.id for f in d.findings]
    return {f.id for f in d.findings}


def task(make: Callable[[], nn.Module], scale: str = "standard", labels: str = "ok") -> ArrayTask:
    x, y = digits_arrays(scale)
    return ArrayTask(x, y, make, labels)


def test_healthy_relu_mlp_has_no_finding(tmp_path: Path) -> None:
    assert ids(task(lambda: mlp(2)), tmp_path) == set()


def test_healthy_batchnorm_mlp_has_no_finding(tmp_path: Path) -> None:
    assert ids(task(lambda: mlp(2, batchnorm=True)), tmp_path) == set()


def test_deep_sigmoid_small_init(tmp_path: Path) -> None:
    found = ids(task(lambda: mlp(8, act=nn.Sigmoid, init_std=0.01)), tmp_path)
    assert {"vanishing_gradients", "init_scale_small"} <= found
    # the model cannot learn, so it cannot overfit either; nothing else
    assert found <= {"vanishing_gradients", "init_scale_small", "cannot_overfit"}


def test_tanh_large_init_saturates(tmp_path: Path) -> None:
    found = ids(task(lambda: mlp(3, act=nn.Tanh, init_std=0.5)), tmp_path)
    assert "saturated_units" in found
    # large logits and large gradients come with it; no depth, input or LR finding
    assert found <= {"saturated_units", "loss_at_init", "clipping_most_steps"}


def test_negative_relu_bias_kills_units(tmp_path: Path) -> None:
    found = ids(task(lambda: mlp(2, bias=-3.0)), tmp_path)
    assert "dead_relus" in found
    assert found <= {"dead_relus", "cannot_overfit", "lr_too_low", "vanishing_gradients"}


def test_inputs_times_255(tmp_path: Path) -> None:
    found = ids(task(lambda: mlp(2), scale="x255"), tmp_path)
    assert "inputs_not_scaled" in found and "inputs_not_centred" not in found
    assert found <= {"inputs_not_scaled", "loss_at_init", "lr_too_high", "clipping_most_steps", "dead_relus"}


def test_inputs_not_centred(tmp_path: Path) -> None:
    found = ids(task(lambda: mlp(2), scale="unit"), tmp_path)
    assert found == {"inputs_not_centred"}


def test_lr_times_100(tmp_path: Path) -> None:
    found = ids(task(lambda: mlp(2)), tmp_path, optim__lr=0.3)
    assert "lr_too_high" in found
    assert found <= {"lr_too_high", "clipping_most_steps", "dead_relus"}


def test_lr_1e7(tmp_path: Path) -> None:
    assert ids(task(lambda: mlp(2)), tmp_path, optim__lr=1e-7) == {"lr_too_low"}


@pytest.mark.parametrize("labels,expected", [("shuffled", "cannot_overfit"), ("zeros", "loss_ignores_labels"),
                                             ("detached", "loss_without_gradient")])
def test_broken_loss(tmp_path: Path, labels: str, expected: str) -> None:
    found = ids(task(lambda: mlp(2), labels=labels), tmp_path)
    assert found == {expected}


def test_batchnorm_left_in_train_mode(tmp_path: Path) -> None:
    found = ids(task(lambda: AlwaysTrainBN(*mlp(2, batchnorm=True))), tmp_path)
    assert found == {"batchnorm_train_mode_in_eval"}


def test_batch_far_above_noise_scale(tmp_path: Path) -> None:
    assert ids(task(lambda: mlp(2)), tmp_path, train__batch_size=1024) == {"batch_above_noise"}


def test_clipping_on_most_steps(tmp_path: Path) -> None:
    assert ids(task(lambda: mlp(2)), tmp_path, clip__max_norm=0.05) == {"clipping_most_steps"}


def test_user_model_is_left_as_it_was(tmp_path: Path) -> None:
    model = mlp(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids(task(lambda: model), tmp_path)  # the same object every build_model(), as trainwell.fit
    after = model.state_dict()
    assert all((before[k] == after[k]).all() for k in before)
