from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from trainwell.config import resolve
from trainwell.errors import ConfigError, DataError
from trainwell.tasks import build_task
from trainwell.tasks.digits import Digits
from trainwell.tasks.digits_vae import DigitsVAE


def make(model=None, **task) -> DigitsVAE:
    built = build_task(resolve({"task": {"name": "digits-vae", **task}, "model": model or {}}))
    assert isinstance(built, DigitsVAE)
    return built


@dataclass
class Out:
    recon_logits: torch.Tensor
    kl: torch.Tensor
    vq_loss: torch.Tensor


class FixedVAE(nn.Module):
    """Hand-checkable stand-in: fixed logits, KL and vq loss per sample."""

    def __init__(self, logits, kl, vq):
        super().__init__()
        self.logits = nn.Parameter(logits)
        self.kl, self.vq = kl, vq

    def forward(self, x):
        return Out(self.logits[: len(x)], self.kl[: len(x)], self.vq[: len(x)])


@pytest.fixture(scope="module")
def vae() -> DigitsVAE:
    return make()


def test_data_in_unit_interval_with_the_digits_split(vae):
    train, test = vae.train_data(), vae.eval_data()
    x = train[0]
    assert x.shape == (64,) and x.dtype == torch.float32
    assert float(train.tensors[0].min()) == 0.0 and float(train.tensors[0].max()) == 1.0
    assert len(train) + len(test) == 1797
    digits = build_task(resolve({"task": {"name": "digits"}}))
    assert isinstance(digits, Digits)
    assert list(vae.test_idx) == list(digits.test_idx)
    idx = torch.tensor([2, 7, 2])
    assert torch.equal(train.get_batch(idx), default_collate([train[2], train[7], train[2]]))


def test_gaussian_loss_is_recon_plus_kl(vae):
    torch.manual_seed(0)
    x = vae.eval_data().get_batch(torch.arange(5))
    logits, kl = torch.randn(5, 64), torch.rand(5) * 3
    model = FixedVAE(logits, kl, torch.full((5,), 99.0))
    out = vae.loss(model, x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    torch.testing.assert_close(out.components["recon"], recon)
    torch.testing.assert_close(out.components["kl"], kl.sum())
    torch.testing.assert_close(out.sum, recon + kl.sum())
    assert float(out.count) == 5 and set(out.components) == {"recon", "kl"}
    m = vae.metrics(model, x)
    assert vae.metric == "nelbo" and set(m) == {"nelbo", "recon", "kl"}
    torch.testing.assert_close(m["nelbo"][0], recon + kl.sum(), check_device=False)


def test_vq_loss_is_recon_plus_vq():
    task = make({"vq": True})
    x = task.eval_data().get_batch(torch.arange(3))
    model = FixedVAE(torch.zeros(3, 64), torch.full((3,), 99.0), torch.tensor([1.0, 2.0, 3.0]))
    out = task.loss(model, x)
    recon = 3 * 64 * torch.log(torch.tensor(2.0))  # zero logits: BCE = ln 2 per pixel
    torch.testing.assert_close(out.components["recon"], recon)
    torch.testing.assert_close(out.sum, recon + 6.0)
    assert task.metric == "loss" and set(task.metrics(model, x)) == {"loss", "recon"}


@pytest.mark.parametrize("vq", [False, True])
def test_real_vae_builds_and_backpropagates(vq):
    task = make({"vq": vq, "width": 32})
    model = task.build_model()
    out = task.loss(model, task.train_data().get_batch(torch.arange(16)))
    (out.sum / out.count).backward()
    assert out.sum.isfinite()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_errors():
    with pytest.raises(
        ConfigError, match=r"model\.kind = 'mlp' does not fit the digits-vae task; valid: vae"
    ):
        make({"kind": "mlp"})
    with pytest.raises(DataError, match=r"task\.data = 'x\.npz'.*leave task\.data empty"):
        make(data="x.npz")
