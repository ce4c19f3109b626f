from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from trainwell.config import resolve
from trainwell.errors import ConfigError, DataError
from trainwell.tasks import build_task
from trainwell.tasks.quadratic import DIM, Quadratic, deep_spectrum_hessian


def make(**raw) -> Quadratic:
    built = build_task(resolve({"task": {"name": "quadratic", **raw.pop("task", {})}, **raw}))
    assert isinstance(built, Quadratic)
    return built


def test_hessian_has_the_deep_learning_spectrum():
    h = deep_spectrum_hessian()
    assert h.shape == (DIM, DIM) and np.allclose(h, h.T)
    lam = np.linalg.eigvalsh(h)
    assert ((lam > 0) & (lam < 1)).sum() == 90 and ((lam > 30) & (lam < 60)).sum() == 10
    assert np.array_equal(h, deep_spectrum_hessian())  # deterministic


def test_datasets_and_model():
    task = make()
    train, test = task.train_data(), task.eval_data()
    assert len(train) == len(test) == 1000 and train[0].shape == (DIM,)
    assert not torch.equal(train.tensors[0], test.tensors[0])
    assert abs(float(train.tensors[0].std()) - 0.6) < 0.02
    idx = torch.tensor([4, 1, 4])
    assert torch.equal(train.get_batch(idx), default_collate([train[4], train[1], train[4]]))
    model = task.build_model()
    assert [n for n, _ in model.named_parameters()] == ["theta"]
    assert torch.equal(model.theta, torch.ones(DIM))
    assert "hessian" not in model.state_dict()  # rebuilt by the task, not checkpointed


def test_loss_matches_hand_formula_and_its_hessian_is_h():
    task = make()
    model = task.build_model()
    x = task.train_data().get_batch(torch.arange(3))  # (3, D)
    out = task.loss(model, x)
    h = task.hessian
    d = model.theta.detach() - x
    expected = 0.5 * torch.einsum("bi,ij,bj->b", d, h, d)
    torch.testing.assert_close(out.per_sample, expected)
    assert float(out.count) == 3

    def mean_loss(theta):
        return 0.5 * ((theta - x) @ h * (theta - x)).sum(1).mean()

    brute = torch.autograd.functional.hessian(mean_loss, torch.ones(DIM), vectorize=True)
    torch.testing.assert_close(brute, h, rtol=1e-4, atol=1e-4)
    grad = torch.autograd.grad(out.sum / out.count, model.theta)[0]
    torch.testing.assert_close(grad, h @ (torch.ones(DIM) - x.mean(0)), rtol=1e-4, atol=1e-4)


def test_errors():
    with pytest.raises(ConfigError, match=r"model\.kind = 'mlp' does not fit the quadratic task"):
        make(model={"kind": "mlp"})
    with pytest.raises(DataError, match=r"task\.data = 'x'.*generates its own data"):
        make(task={"data": "x"})
