"""The MLP: every activation x norm x residual combination trains a step; residual init."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from trainwell.models import ACTIVATIONS, MLP, NORMS


@pytest.mark.parametrize(
    "activation,norm,residual", list(itertools.product(ACTIVATIONS, NORMS, [False, True]))
)
def test_forward_backward_every_option(activation: str, norm: str, residual: bool) -> None:
    torch.manual_seed(0)
    model = MLP(12, 3, width=8, depth=2, activation=activation, norm=norm, residual=residual)
    x = torch.randn(5, 3, 4)  # flattened to (5, 12) inside
    logits = model(x)
    assert logits.shape == (5, 3)
    logits.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the input layer learns something even when the residual branches start at zero
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_zero_init_residual_blocks_are_identity() -> None:
    torch.manual_seed(0)
    model = MLP(6, 2, width=16, depth=3, norm="layer", residual=True, zero_init_residual=True)
    x = torch.randn(4, 16)
    for block in model.body[1:-1]:
        torch.testing.assert_close(block(x), x)


def test_without_zero_init_blocks_change_their_input() -> None:
    torch.manual_seed(0)
    model = MLP(6, 2, width=16, depth=2, norm="layer", residual=True, zero_init_residual=False)
    x = torch.randn(4, 16)
    assert not torch.allclose(model.body[1](x), x)


def test_dropout_is_active_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = MLP(10, 4, width=64, depth=2, dropout=0.5)
    x = torch.randn(8, 10)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_batch_norm_replaces_the_linear_bias() -> None:
    model = MLP(10, 4, width=8, depth=2, norm="batch")
    hidden = [m for m in model.body if isinstance(m, nn.Linear)]
    assert hidden and all(m.bias is None for m in hidden)
    assert model.final_layer is model.head
