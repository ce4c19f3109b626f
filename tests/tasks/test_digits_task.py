from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from trainwell.config import resolve
from trainwell.data.arrays import load_digits_arrays
from trainwell.errors import ConfigError, DataError
from trainwell.tasks import build_task
from trainwell.tasks.digits import Digits


def make(**task_and_model) -> Digits:
    model = task_and_model.pop("model", {})
    built = build_task(resolve({"task": {"name": "digits", **task_and_model}, "model": model}))
    assert isinstance(built, Digits)
    return built


@pytest.fixture(scope="module")
def digits() -> Digits:
    return make()


def test_datasets_shapes_dtypes_and_split(digits):
    assert (digits.metric, digits.higher_is_better, digits.num_classes) == ("accuracy", True, 10)
    train, test = digits.train_data(), digits.eval_data()
    assert len(train) + len(test) == 1797 and len(test) == 360  # ceil(0.2 * 1797)
    assert set(digits.train_idx).isdisjoint(digits.test_idx)
    x, y = train[0]
    assert x.shape == (64,) and x.dtype == torch.float32 and y.dtype == torch.int64
    idx = torch.tensor([3, 0, 100, 3])
    bx, by = train.get_batch(idx)
    cx, cy = default_collate([train[int(i)] for i in idx])
    assert torch.equal(bx, cx) and torch.equal(by, cy)
    # stratified: every digit is ~20% held out
    _, labels = load_digits_arrays()
    for c in range(10):
        share = (labels[digits.test_idx] == c).sum() / (labels == c).sum()
        assert abs(share - 0.2) < 0.02


def test_conv_kinds_get_images(digits):
    cnn = make(model={"kind": "cnn", "width": 8})
    x, _ = cnn.train_data()[0]
    assert x.shape == (1, 8, 8) and cnn.input_shape == (1, 8, 8)
    assert torch.equal(x.flatten(), digits.train_data()[0][0])  # same preprocessing


def test_split_is_deterministic(digits):
    again = make()
    assert np.array_equal(again.test_idx, digits.test_idx)
    assert torch.equal(again.train_data().tensors[0], digits.train_data().tensors[0])


def test_inputs_are_normalised_with_training_statistics(digits):
    images, _ = load_digits_arrays()
    flat = images.reshape(len(images), -1)
    train_raw = flat[digits.train_idx]
    mean = train_raw.mean(axis=0)
    std = np.sqrt(np.mean((train_raw - mean) ** 2))
    expected = (flat[digits.test_idx] - mean) / std
    np.testing.assert_allclose(
        digits.eval_data().tensors[0].numpy(), expected, rtol=1e-5, atol=1e-5
    )
    train_x = digits.train_data().tensors[0].double()
    np.testing.assert_allclose(train_x.mean(0).numpy(), 0.0, atol=1e-5)
    assert math.isclose(float(train_x.pow(2).mean().sqrt()), 1.0, rel_tol=1e-5)


def _npz(path, x, y):
    np.savez(path, x=x, y=y)
    return str(path)


def test_test_split_does_not_leak_into_training_inputs(tmp_path, digits):
    images, labels = load_digits_arrays()
    a = make(data=_npz(tmp_path / "a.npz", images, labels))
    assert np.array_equal(a.test_idx, digits.test_idx)  # same split as the built-in data
    poisoned = images.copy()
    poisoned[a.test_idx] = poisoned[a.test_idx] * 50 + 1000  # wildly different held-out data
    for whiten in (False, True):
        clean = make(data=_npz(tmp_path / "c.npz", images, labels), whiten=whiten)
        b = make(data=_npz(tmp_path / "b.npz", poisoned, labels), whiten=whiten)
        assert torch.equal(b.train_data().tensors[0], clean.train_data().tensors[0])
        assert not torch.equal(b.eval_data().tensors[0], clean.eval_data().tensors[0])


def test_whitening_equalises_the_training_covariance():
    def spectrum(task):
        x = task.train_data().tensors[0].double()  # (N, 64)
        return torch.linalg.eigvalsh(x.T @ x / len(x))

    raw, white = spectrum(make()), spectrum(make(whiten=True))
    assert raw.max() > 5  # a few pixel directions carry most of the variance
    # ZCA with eps maps each eigenvalue lam to lam / (lam + eps) < 1: the strong directions
    # all end near 1, so the spread collapses
    assert white.max() < 1.0
    assert (white > 0.5).sum() > 20 and (raw > 0.5).sum() < (white > 0.5).sum()


def test_loss_and_metrics_match_a_hand_computation(digits):
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    x, y = digits.eval_data().get_batch(torch.arange(50))
    logits = model(x)
    out = digits.loss(model, (x, y))
    torch.testing.assert_close(out.sum, F.cross_entropy(logits, y, reduction="sum"))
    assert float(out.count) == 50 and out.per_sample.shape == (50,)
    m = digits.metrics(model, (x, y))
    correct = (logits.argmax(1) == y).sum()
    assert float(m["accuracy"][0]) == float(correct) and float(m["accuracy"][1]) == 50
    torch.testing.assert_close(m["loss"][0], out.sum.detach())


def test_real_models_build_and_run(digits):
    for kind, data in (
        ("mlp", digits),
        ("cnn", make(model={"kind": "cnn", "width": 8})),
        ("resnet", make(model={"kind": "resnet", "width": 8, "depth": 2})),
    ):
        model = data.build_model()
        batch = data.train_data().get_batch(torch.arange(8))
        out = data.loss(model, batch)
        assert out.sum.isfinite(), kind
        assert abs(float(out.sum.detach() / out.count) - math.log(10)) < 1.5, kind


def test_user_npz_labels_decide_num_classes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3, 4, 4))
    y = np.arange(40) % 4
    task = make(data=_npz(tmp_path / "d.npz", x, y), model={"kind": "cnn", "width": 4})
    assert task.num_classes == 4 and task.input_shape == (3, 4, 4)
    assert task.build_model()(task.train_data().get_batch(torch.arange(2))[0]).shape == (2, 4)


def test_error_paths_name_the_key(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"model\.kind = 'gpt' does not fit the digits task.*valid: mlp, cnn, resnet",
    ):
        make(model={"kind": "gpt"})
    flat = _npz(tmp_path / "flat.npz", np.ones((10, 5)), np.arange(10) % 2)
    with pytest.raises(DataError, match=r"model\.kind = 'cnn' needs images.*\(5,\)"):
        make(data=flat, model={"kind": "cnn"})
    one_class = _npz(tmp_path / "one.npz", np.ones((10, 5)), np.zeros(10, dtype=int))
    with pytest.raises(DataError, match=r"task\.data = .*one\.npz.*single class"):
        make(data=one_class)
    np.savez(tmp_path / "nokeys.npz", inputs=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"task\.data = .*nokeys\.npz.*missing array"):
        make(data=str(tmp_path / "nokeys.npz"))
