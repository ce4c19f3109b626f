"""Reference models and layers: MLP, conv net, ResNet, GPT, VAE / VQ, norms, init schemes.

``build_model(cfg.model, spec)`` builds one from the ``[model]`` section; every class is
also usable on its own from a script (plain constructor arguments, no config needed).
"""

from __future__ import annotations

from trainwell.models.activations import ACTIVATIONS, activation_gain, make_activation
from trainwell.models.build import MODELS, build_model
from trainwell.models.cnn import ConvNet
from trainwell.models.gpt import GPT
from trainwell.models.init import SCHEMES, apply_init, feeds, zero_init
from trainwell.models.mlp import MLP
from trainwell.models.norms import NORMS, LayerNorm, RMSNorm, SampleNorm2d, make_norm
from trainwell.models.resnet import ResNet
from trainwell.models.rope import RotaryEmbedding, apply_rotary
from trainwell.models.spec import ModelSpec
from trainwell.models.vae import VAE, VAEOutput
from trainwell.models.vq import VectorQuantizer, VQOutput

__all__ = [
    "ACTIVATIONS",
    "GPT",
    "MLP",
    "MODELS",
    "NORMS",
    "SCHEMES",
    "VAE",
    "ConvNet",
    "LayerNorm",
    "ModelSpec",
    "RMSNorm",
    "ResNet",
    "RotaryEmbedding",
    "SampleNorm2d",
    "VAEOutput",
    "VQOutput",
    "VectorQuantizer",
    "activation_gain",
    "apply_init",
    "apply_rotary",
    "build_model",
    "feeds",
    "make_activation",
    "make_norm",
    "zero_init",
]
