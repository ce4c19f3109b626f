"""The DeepOBS-style conv net: shapes for every depth and option, on 8x8 and larger images."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainwell.models import ACTIVATIONS, NORMS, ConvNet


@pytest.mark.parametrize("depth,norm", list(itertools.product([1, 2, 3, 4], NORMS)))
def test_forward_backward_depth_and_norm(depth: int, norm: str) -> None:
    torch.manual_seed(0)
    model = ConvNet((1, 8, 8), 10, width=4, depth=depth, norm=norm, dropout=0.1)
    logits = model(torch.randn(3, 1, 8, 8))
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(activation: str) -> None:
    model = ConvNet((3, 12, 10), 5, width=4, depth=2, activation=activation)
    assert model(torch.randn(2, 3, 12, 10)).shape == (2, 5)


def test_channel_plan_doubles_per_stage() -> None:
    model = ConvNet((1, 8, 8), 10, width=8, depth=3)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]
    # 8x8 pooled three times -> 1x1; hidden FC is 4x the last channels
    assert model.classifier[1].in_features == 32
    assert model.classifier[1].out_features == 128


def test_layer_norm_makes_outputs_batch_independent() -> None:
    torch.manual_seed(0)
    model = ConvNet((1, 8, 8), 10, width=4, depth=2, norm="layer").train()
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x)[:1], model(x[:1]))
