"""build_model: every kind from the [model] section, and errors that name the key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.errors import ConfigError, TrainwellError
from trainwell.models import GPT, MODELS, VAE, ModelSpec, build_model
from trainwell.models.config import ModelConfig

IMAGES = ModelSpec(input_shape=(1, 8, 8), num_classes=10)
TEXT = ModelSpec(vocab_size=20, seq_len=8)


@pytest.mark.parametrize(
    "kind,spec,x,shape",
    [
        ("mlp", IMAGES, torch.rand(2, 1, 8, 8), (2, 10)),
        ("cnn", IMAGES, torch.rand(2, 1, 8, 8), (2, 10)),
        ("resnet", IMAGES, torch.rand(2, 1, 8, 8), (2, 10)),
        ("gpt", TEXT, torch.randint(0, 20, (2, 8)), (2, 8, 20)),
    ],
)
def test_every_kind_builds_and_runs(
    kind: str, spec: ModelSpec, x: torch.Tensor, shape: tuple
) -> None:
    norm = "layer" if kind == "gpt" else "batch"
    model = build_model(ModelConfig(kind=kind, width=16, depth=2, heads=2, norm=norm), spec)
    assert model(x).shape == shape


def test_vae_builds_both_bottlenecks() -> None:
    for vq in (False, True):
        cfg = ModelConfig(kind="vae", width=16, depth=1, latent_dim=3, vq=vq, codebook_size=4)
        model = build_model(cfg, IMAGES)
        assert isinstance(model, VAE) and (model.quantizer is not None) == vq
        assert model(torch.rand(2, 1, 8, 8)).recon_logits.shape == (2, 64)


def test_registry_lists_the_kinds() -> None:
    assert MODELS.names() == ["cnn", "gpt", "mlp", "resnet", "vae"]


def test_quadratic_belongs_to_its_task() -> None:
    with pytest.raises(ConfigError, match="built by the quadratic task"):
        build_model(ModelConfig(kind="quadratic"), IMAGES)


def test_gpt_norm_must_be_layer_or_rms() -> None:
    with pytest.raises(ConfigError) as e:
        build_model(ModelConfig(kind="gpt", norm="batch"), TEXT)
    assert e.value.problems == [
        "model.norm: 'batch' is not supported by the gpt; valid: layer, rms"
    ]
    assert isinstance(e.value, TrainwellError)


def test_width_must_divide_by_heads_and_problems_come_together() -> None:
    with pytest.raises(ConfigError) as e:
        build_model(ModelConfig(kind="gpt", width=100, heads=3, norm="none"), TEXT)
    assert "model.width (100) must be divisible by model.heads (3)" in e.value.problems
    assert len(e.value.problems) == 2


def test_rope_needs_an_even_head_size() -> None:
    cfg = ModelConfig(kind="gpt", width=6, heads=2, pos="rope")
    with pytest.raises(ConfigError, match="model.pos = 'learned'"):
        build_model(cfg, TEXT)
    assert isinstance(build_model(cfg.model_copy(update={"pos": "learned"}), TEXT), GPT)


def test_kind_that_does_not_fit_the_task_data() -> None:
    with pytest.raises(ConfigError, match="model.kind 'gpt' needs a language-model task"):
        build_model(ModelConfig(kind="gpt"), IMAGES)
    with pytest.raises(ConfigError, match="use model.kind = 'mlp'"):
        build_model(ModelConfig(kind="cnn"), ModelSpec(input_shape=(64,), num_classes=10))
    with pytest.raises(ConfigError, match="input_shape"):
        build_model(ModelConfig(kind="mlp"), TEXT)


def test_init_options_are_applied() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        kind="mlp",
        activation="relu",
        norm="none",
        residual=False,
        width=512,
        depth=1,
        init="kaiming",
        relu_bias=0.01,
    )
    model = build_model(cfg, ModelSpec(input_shape=(512,), num_classes=3))
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert torch.all(first.bias == 0.01)
    assert abs(first.weight.std().item() - (2 / 512) ** 0.5) < 0.1 * (2 / 512) ** 0.5


def test_gpt_options_reach_the_model() -> None:
    cfg = ModelConfig(
        kind="gpt",
        width=16,
        heads=2,
        depth=3,
        pos="learned",
        tie_embeddings=False,
        qk_norm=False,
        bias=True,
        zero_init_residual=False,
    )
    model = build_model(cfg, TEXT)
    assert isinstance(model, GPT)
    assert len(model.blocks) == 3 and model.wpe is not None and model.rope is None
    assert model.lm_head.weight is not model.wte.weight
    assert model.blocks[0].attn.q_norm is None and model.blocks[0].attn.qkv.bias is not None
    assert model.blocks[0].attn.proj.weight.abs().sum() > 0
