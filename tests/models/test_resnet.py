"""The pre-activation ResNet: options, identity blocks at init, BatchNorm train vs eval."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainwell.models import NORMS, ResNet
from trainwell.models.resnet import PreActBlock


@pytest.mark.parametrize("norm,depth", list(itertools.product(NORMS, [1, 2, 4])))
def test_forward_backward(norm: str, depth: int) -> None:
    torch.manual_seed(0)
    model = ResNet((1, 8, 8), 10, width=4, depth=depth, norm=norm, dropout=0.1)
    logits = model(torch.randn(3, 1, 8, 8))
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_stages_double_channels_and_halve_the_map() -> None:
    model = ResNet((3, 8, 8), 10, width=4, depth=4)
    shapes = []
    h = model.stem(torch.randn(1, 3, 8, 8))
    for block in model.blocks:
        h = block(h)
        shapes.append(tuple(h.shape[1:]))
    # 4 blocks over 3 stages: 2, 1, 1
    assert shapes == [(4, 8, 8), (4, 8, 8), (8, 4, 4), (16, 2, 2)]


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_zero_init_residual_blocks_are_identity(activation: str) -> None:
    torch.manual_seed(0)
    model = ResNet((1, 8, 8), 10, width=4, depth=3, activation=activation, norm="batch")
    block = model.blocks[0]
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(block(x), x)
    # a downsampling block reduces to its projection shortcut
    down = model.blocks[1]
    y = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(down(y), down.shortcut(y))


def test_without_zero_init_blocks_are_not_identity() -> None:
    torch.manual_seed(0)
    block = PreActBlock(4, 4, 1, "relu", "batch", zero_init_residual=False)
    x = torch.randn(2, 4, 8, 8)
    assert not torch.allclose(block(x), x)


def test_batch_norm_train_vs_eval() -> None:
    torch.manual_seed(0)
    model = ResNet((1, 8, 8), 10, width=4, depth=2, norm="batch", zero_init_residual=False)
    x = torch.randn(6, 1, 8, 8) * 3 + 1
    # train mode: batch statistics, so a sample's output depends on the rest of the batch
    model.train()
    assert not torch.allclose(model(x)[:2], model(x[:2]), atol=1e-5)
    running = model.blocks[0].norm1.running_mean.clone()
    # ...and the running statistics move
    model(x)
    assert not torch.equal(model.blocks[0].norm1.running_mean, running)
    # eval mode: running statistics, so outputs do not depend on the batch and nothing moves
    model.eval()
    frozen = model.blocks[0].norm1.running_mean.clone()
    full = model(x)
    torch.testing.assert_close(full[:2], model(x[:2]))
    torch.testing.assert_close(full[3:4], model(x[3:4]))
    assert torch.equal(model.blocks[0].norm1.running_mean, frozen)
