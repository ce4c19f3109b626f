"""clip_and_norms: clipping and the gradient norm exactly as torch's clip_grad_norm_, with
the final-layer probe's norm measured in the same _foreach_norm call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.train.probe import clip_and_norms, one_kind


def model_with_grads(seed: int, scale: float, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(7, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    x = torch.randn(10, 7, dtype=dtype)
    (m(x).pow(2).sum() * scale).backward()
    return m


@pytest.mark.parametrize("scale", [1e-3, 50.0])  # below and above the clipping threshold
@pytest.mark.parametrize("max_norm", [1.0, 0.0])
@pytest.mark.parametrize("with_act", [True, False])
def test_the_same_bits_as_clip_grad_norm(scale, max_norm, with_act):
    ref, ours = model_with_grads(0, scale), model_with_grads(0, scale)
    params = list(ours.parameters())
    act = torch.randn(4, 5, 16) if with_act else None
    if max_norm > 0:
        expected = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm, foreach=True)
    else:
        expected = torch.nn.utils.get_total_norm([p.grad for p in ref.parameters()], foreach=True)
    total, act_norm = clip_and_norms(params, max_norm, act, one_kind(params))
    assert torch.equal(total, expected)
    for a, b in zip(ref.parameters(), params, strict=True):
        assert torch.equal(a.grad, b.grad)
    if max_norm > 0 and scale > 1:  # it did clip
        after = torch.nn.utils.get_total_norm([p.grad for p in params])
        assert float(after) == pytest.approx(max_norm, rel=1e-5)
    if with_act:
        assert torch.equal(act_norm, torch.linalg.vector_norm(act))
    else:
        assert act_norm is None


@pytest.mark.parametrize("kind", ["bf16", "strided"])
def test_an_activation_of_another_dtype_or_layout_is_measured_apart(kind):
    m = model_with_grads(1, 1.0)
    params = list(m.parameters())
    act = torch.randn(8, 16).to(torch.bfloat16) if kind == "bf16" else torch.randn(16, 8).t()
    total, act_norm = clip_and_norms(params, 1.0, act, one_kind(params))
    assert act_norm.dtype == torch.float32
    assert float(act_norm) == pytest.approx(float(act.float().norm()), rel=1e-6)
    assert total.dtype == torch.float32


def test_mixed_parameters_take_torchs_own_path():
    m = model_with_grads(2, 10.0)
    m[2].to(torch.float64)
    m[2].weight.grad = torch.randn(3, 16, dtype=torch.float64)
    m[2].bias.grad = torch.randn(3, dtype=torch.float64)
    ref = [p.grad.clone() for p in m.parameters()]
    params = list(m.parameters())
    assert not one_kind(params)
    expected = torch.nn.utils.get_total_norm(ref, foreach=True)
    total, act_norm = clip_and_norms(params, 1.0, torch.ones(2, 2), one_kind(params))
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    assert float(act_norm) == pytest.approx(2.0)


def test_no_gradients():
    m = nn.Linear(2, 2)
    params = list(m.parameters())
    total, act_norm = clip_and_norms(params, 1.0, torch.full((4,), 3.0), one_kind(params))
    assert total is None and float(act_norm) == pytest.approx(6.0)
