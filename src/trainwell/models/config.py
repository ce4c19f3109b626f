"""The ``[model]`` section: options of the reference models (MLP, CNN, ResNet, GPT, VAE).

One flat section so that ``--set model.depth=6`` works for every model kind; each kind reads
the fields it understands and the task picks a default kind. Fields a kind does not use are
ignored by it (``trainwell config show`` lists which kinds use which field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainwell.section import Section

Activation = Literal["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid"]
Norm = Literal["none", "batch", "layer", "rms"]
Init = Literal["default", "xavier", "kaiming", "orthogonal", "normal"]


class ModelConfig(Section):
    kind: Literal["mlp", "cnn", "resnet", "gpt", "vae", "quadratic"] = "gpt"
    """Which reference model to build. Each built-in task sets its own default."""
    depth: int = Field(4, ge=1)
    """Number of hidden layers (mlp), transformer blocks (gpt), conv stages (cnn), residual blocks (resnet), encoder layers (vae)."""
    width: int = Field(128, ge=1)
    """Hidden width (mlp, vae), model dimension d_model (gpt), base channels (cnn, resnet)."""
    heads: int = Field(4, ge=1)
    """Attention heads (gpt); width must be divisible by it."""
    activation: Activation = "gelu"
    """Nonlinearity (mlp, cnn, vae; gpt uses it in its MLP). ReLU is the classic default, GELU/SiLU for large models."""
    norm: Norm = "layer"
    """Normalisation layer. gpt: layer or rms (LayerNorm is reported to keep activations smaller across depth than RMSNorm); mlp/cnn/resnet: none, batch, layer, rms."""
    residual: bool = True
    """Residual connections x + f(norm(x)) (mlp). Residuals make depth trainable (Dieleman, MLSS 2023)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout probability inside the model; never applied to embeddings (OPT)."""
    bias: bool = False
    """Biases in linear layers of the gpt. Off by default: caps growth of key-projection biases (a common LLM stability practice)."""
    qk_norm: bool = True
    """Normalise queries and keys before attention (gpt). Stabilises attention logits (Dehghani et al. 2023)."""
    pos: Literal["learned", "rope"] = "rope"
    """Position information (gpt): learned absolute embeddings or rotary embeddings."""
    tie_embeddings: bool = True
    """Share the gpt's input embedding and output projection (fewer parameters, trains better when small)."""
    init: Init = "default"
    """Weight initialisation: the model's own default, xavier (Glorot 2010), kaiming (He 2015), orthogonal, normal(init_std)."""
    init_std: float = Field(0.02, gt=0.0)
    """Standard deviation for init='normal' and for gpt weights (GPT-2 uses 0.02)."""
    zero_init_residual: bool = True
    """Zero-initialise the last layer of each residual branch so every block starts as identity (Goyal 2017; Tuning Playbook)."""
    relu_bias: float = Field(0.0, ge=0.0)
    """Initial bias of layers that feed a ReLU; a small positive value (e.g. 0.01) guards against dead units."""
    latent_dim: int = Field(16, ge=1)
    """Latent size of the vae (and embedding size of the vq codebook)."""
    vq: bool = False
    """Use a vector-quantisation bottleneck in the vae instead of a Gaussian latent (van den Oord et al. 2017)."""
    codebook_size: int = Field(64, ge=2)
    """Number of codes in the vq bottleneck."""
    commitment: float = Field(0.25, ge=0.0)
    """Commitment loss weight of the vq bottleneck (van den Oord et al. 2017 use 0.25)."""
    parametrization: Literal["sp", "mup"] = "sp"
    """sp: the standard parametrization (the model's own init, one learning rate); mup: muP (Yang et al. 2022) relative to mup_base_width, so that the learning rate and init tuned at that width hold at any width (mlp, cnn, gpt; see docs/mup.md). sp by default: muP pays off when tuning small and training wide."""
    mup_base_width: int = Field(128, ge=1)
    """The width at which muP equals sp (width multiplier m = width / mup_base_width): tune there. 128 is the built-in tasks' default width, whose default learning rates then carry over to wider models."""

    @model_validator(mode="after")
    def _mup_fits(self) -> ModelConfig:
        if self.parametrization != "mup":
            return self
        problems = []
        if self.kind not in MUP_KINDS:
            problems.append(f"model.parametrization = 'mup' is built for model.kind in {', '.join(MUP_KINDS)}; "
                            f"got {self.kind!r}")
        if self.kind == "gpt" and self.mup_base_width % self.heads:
            problems.append(f"model.mup_base_width ({self.mup_base_width}) must be divisible by model.heads "
                            f"({self.heads}): muP builds the gpt at that width to read its shapes")
        elif self.kind == "gpt" and self.pos == "rope" and (self.mup_base_width // self.heads) % 2:
            problems.append(f"model.mup_base_width / model.heads = {self.mup_base_width // self.heads} must be "
                            "even for model.pos = 'rope' (muP builds the gpt at the base width)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


MUP_KINDS = ("mlp", "cnn", "gpt")
"""Reference models whose muP is tested (tests/mup)."""
