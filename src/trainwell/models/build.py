"""``build_model``: the ``[model]`` section + the task's ModelSpec -> a reference model.

Each kind's builder checks the combination first and reports every problem at once,
naming the config key and what would be valid; then the init scheme is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from trainwell.errors import ConfigError
from trainwell.models.cnn import ConvNet
from trainwell.models.config import ModelConfig
from trainwell.models.gpt import GPT
from trainwell.models.init import apply_init
from trainwell.models.mlp import MLP
from trainwell.models.resnet import ResNet
from trainwell.models.spec import ModelSpec
from trainwell.models.vae import VAE
from trainwell.registry import Registry

Builder = Callable[[ModelConfig, ModelSpec], nn.Module]

MODELS: Registry[Builder] = Registry("model", "model.kind")

GPT_NORMS = ("layer", "rms")


def build_model(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    """Build the model ``cfg.kind`` for data described by ``spec`` and apply ``cfg.init``.

    Raises ConfigError when the options do not fit together or the task's data does not
    fit the kind (e.g. a gpt on an image task).
    """
    if cfg.kind == "quadratic":
        raise ConfigError(
            "model.kind 'quadratic' is built by the quadratic task (task.name = 'quadratic'); "
            f"build_model makes: {', '.join(MODELS.names())}"
        )
    if cfg.parametrization == "mup":  # the same model, put in muP relative to its base width
        from trainwell.mup import parametrize

        return parametrize(lambda w: _build_sp(cfg.model_copy(update={"width": w}), spec),
                           cfg.width, cfg.mup_base_width)
    return _build_sp(cfg, spec)


def _build_sp(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    model = MODELS.get(cfg.kind)(cfg, spec)
    return apply_init(model, cfg.init, cfg.init_std, cfg.relu_bias, activation=cfg.activation)


# ---------------------------------------------------------------- checks


def _need(cfg: ModelConfig, spec: ModelSpec, fields: tuple[str, ...], what: str) -> list[str]:
    missing = [f for f in fields if getattr(spec, f) is None]
    if not missing:
        return []
    return [
        f"model.kind {cfg.kind!r} needs {what} (the task gives no {', '.join(missing)}); "
        f"this task's data: {_describe(spec)}"
    ]


def _describe(spec: ModelSpec) -> str:
    given = {k: v for k, v in vars(spec).items() if v is not None}
    return ", ".join(f"{k}={v}" for k, v in given.items()) or "nothing"


def _image_problems(cfg: ModelConfig, spec: ModelSpec) -> list[str]:
    problems = _need(cfg, spec, ("input_shape", "num_classes"), "an image classification task")
    if spec.input_shape is not None and len(spec.input_shape) != 3:
        problems.append(
            f"model.kind {cfg.kind!r} needs images of shape (C, H, W), the task gives "
            f"inputs of shape {spec.input_shape}; use model.kind = 'mlp' for flat features"
        )
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


# ---------------------------------------------------------------- builders


@MODELS.register("mlp", "multilayer perceptron classifier, plain or residual")
def _build_mlp(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    _raise(_need(cfg, spec, ("input_shape", "num_classes"), "a classification task"))
    assert spec.input_shape is not None and spec.num_classes is not None
    return MLP(
        math.prod(spec.input_shape),
        spec.num_classes,
        width=cfg.width,
        depth=cfg.depth,
        activation=cfg.activation,
        norm=cfg.norm,
        residual=cfg.residual,
        dropout=cfg.dropout,
        zero_init_residual=cfg.zero_init_residual,
    )


@MODELS.register("cnn", "DeepOBS-style conv net (2c2d / 3c3d) for small images")
def _build_cnn(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    _raise(_image_problems(cfg, spec))
    assert spec.input_shape is not None and spec.num_classes is not None
    c, h, w = spec.input_shape
    return ConvNet(
        (c, h, w),
        spec.num_classes,
        width=cfg.width,
        depth=cfg.depth,
        activation=cfg.activation,
        norm=cfg.norm,
        dropout=cfg.dropout,
    )


@MODELS.register("resnet", "small pre-activation ResNet for small images")
def _build_resnet(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    _raise(_image_problems(cfg, spec))
    assert spec.input_shape is not None and spec.num_classes is not None
    c, h, w = spec.input_shape
    return ResNet(
        (c, h, w),
        spec.num_classes,
        width=cfg.width,
        depth=cfg.depth,
        activation=cfg.activation,
        norm=cfg.norm,
        dropout=cfg.dropout,
        zero_init_residual=cfg.zero_init_residual,
    )


@MODELS.register("gpt", "decoder-only transformer language model")
def _build_gpt(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    problems = _need(cfg, spec, ("vocab_size", "seq_len"), "a language-model task")
    if cfg.norm not in GPT_NORMS:
        problems.append(
            f"model.norm: {cfg.norm!r} is not supported by the gpt; valid: {', '.join(GPT_NORMS)}"
        )
    if cfg.width % cfg.heads:
        problems.append(f"model.width ({cfg.width}) must be divisible by model.heads ({cfg.heads})")
    elif cfg.pos == "rope" and (cfg.width // cfg.heads) % 2:
        problems.append(
            f"model.width / model.heads = {cfg.width // cfg.heads} (the head size) must be even "
            "for model.pos = 'rope', which rotates pairs of features; or use model.pos = 'learned'"
        )
    _raise(problems)
    assert spec.vocab_size is not None and spec.seq_len is not None
    return GPT(
        spec.vocab_size,
        spec.seq_len,
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        activation=cfg.activation,
        norm=cfg.norm,
        qk_norm=cfg.qk_norm,
        bias=cfg.bias,
        pos=cfg.pos,
        dropout=cfg.dropout,
        tie_embeddings=cfg.tie_embeddings,
        init_std=cfg.init_std,
        zero_init_residual=cfg.zero_init_residual,
        attn_scale=_mup_attention_scale(cfg),
    )


def _mup_attention_scale(cfg: ModelConfig) -> float | None:
    """muP scales attention logits by 1/head_dim, not 1/sqrt(head_dim) (Yang et al. 2022:
    queries and keys become correlated during training, so q.k grows like head_dim). Written
    sqrt(d_base)/d as the mup package's 8/d: equal to SP's 1/sqrt(d) at the base width."""
    if cfg.parametrization != "mup":
        return None
    d, d_base = cfg.width // cfg.heads, cfg.mup_base_width // cfg.heads
    return math.sqrt(d_base) / d


@MODELS.register("vae", "variational autoencoder, Gaussian or vector-quantised latent")
def _build_vae(cfg: ModelConfig, spec: ModelSpec) -> nn.Module:
    _raise(_need(cfg, spec, ("input_shape",), "inputs to reconstruct"))
    assert spec.input_shape is not None
    return VAE(
        math.prod(spec.input_shape),
        latent_dim=cfg.latent_dim,
        width=cfg.width,
        depth=cfg.depth,
        activation=cfg.activation,
        vq=cfg.vq,
        codebook_size=cfg.codebook_size,
        commitment=cfg.commitment,
    )
