"""Init schemes give the expected scales; tags steer gains, ReLU biases and zero-init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.models import GPT, MLP, apply_init, feeds, zero_init


def test_kaiming_std_is_he_for_relu() -> None:
    torch.manual_seed(0)
    layer = apply_init(nn.Linear(512, 512), "kaiming")
    expected = math.sqrt(2 / 512)
    assert abs(layer.weight.std().item() - expected) < 0.1 * expected
    assert layer.bias.abs().sum() == 0


def test_kaiming_uses_the_tagged_activation_and_conv_fan_in() -> None:
    torch.manual_seed(0)
    conv = feeds(nn.Conv2d(32, 64, 3), "tanh")
    apply_init(nn.Sequential(conv), "kaiming")
    expected = (5 / 3) / math.sqrt(32 * 9)
    assert abs(conv.weight.std().item() - expected) < 0.1 * expected
    head = feeds(nn.Linear(512, 512), None)  # a linear output: gain 1
    apply_init(head, "kaiming")
    assert abs(head.weight.std().item() - 1 / math.sqrt(512)) < 0.1 / math.sqrt(512)


def test_xavier_std() -> None:
    torch.manual_seed(0)
    layer = apply_init(nn.Linear(256, 512), "xavier")
    expected = math.sqrt(2 / (256 + 512))
    assert abs(layer.weight.std().item() - expected) < 0.1 * expected


def test_orthogonal_rows_are_orthonormal_times_gain() -> None:
    torch.manual_seed(0)
    layer = apply_init(feeds(nn.Linear(64, 64), "relu"), "orthogonal")
    w = layer.weight
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(64), atol=1e-4, rtol=1e-4)


def test_normal_draws_weights_and_embeddings_at_std() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(512, 256), nn.Linear(256, 512))
    apply_init(model, "normal", std=0.05)
    for p in (model[0].weight, model[1].weight):
        assert abs(p.std().item() - 0.05) < 0.005


def test_default_keeps_the_model_init() -> None:
    torch.manual_seed(0)
    model = MLP(8, 3, width=16, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init(model, "default")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("scheme", ["default", "kaiming", "xavier"])
def test_relu_bias_only_on_layers_that_feed_a_relu(scheme: str) -> None:
    model = MLP(8, 3, width=16, depth=2, activation="relu")
    apply_init(model, scheme, relu_bias=0.01)
    hidden = [m for m in model.body if isinstance(m, nn.Linear)]
    assert all(torch.all(m.bias == 0.01) for m in hidden)
    assert not torch.any(model.head.bias == 0.01)
    # untagged user model: a Linear followed by nn.ReLU in a Sequential counts
    user = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    apply_init(user, scheme, relu_bias=0.01)
    assert torch.all(user[0].bias == 0.01)
    assert not torch.any(user[2].bias == 0.01)


def test_no_relu_bias_for_other_activations() -> None:
    model = MLP(8, 3, width=16, depth=2, activation="gelu")
    apply_init(model, "kaiming", relu_bias=0.01)
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, nn.Linear))


def test_zero_init_layers_stay_zero() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), zero_init(nn.Linear(8, 8)))
    for scheme in ("xavier", "kaiming", "orthogonal", "normal"):
        apply_init(model, scheme, relu_bias=0.1)
        assert model[1].weight.abs().sum() == 0 and model[1].bias.abs().sum() == 0
        assert model[0].weight.abs().sum() > 0


def test_tied_embedding_is_left_to_the_model_under_kaiming() -> None:
    torch.manual_seed(0)
    model = GPT(300, 8, width=64, depth=1, heads=2, tie_embeddings=True, init_std=0.02)
    apply_init(model, "kaiming")
    assert model.lm_head.weight is model.wte.weight
    assert abs(model.wte.weight.std().item() - 0.02) < 0.002
    # the hidden matrices did get He init (fan_in 64, GELU gain sqrt 2)
    fc = model.blocks[0].mlp.fc.weight
    assert abs(fc.std().item() - math.sqrt(2 / 64)) < 0.1 * math.sqrt(2 / 64)


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="valid: default, xavier"):
        apply_init(nn.Linear(2, 2), "he")
