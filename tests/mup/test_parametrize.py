"""muP for the built-in models: roles, init, readout multiplier, attention scale, and muP at
the base width being exactly SP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.errors import ConfigError
from trainwell.models import ModelSpec, build_model
from trainwell.models.config import ModelConfig
from trainwell.mup import MupReadout, spec_of

DIGITS = ModelSpec(input_shape=(64,), num_classes=10)
BYTES = ModelSpec(vocab_size=256, seq_len=16)


def mlp(width: int, param: str = "mup", base: int = 32, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(kind="mlp", depth=2, width=width, parametrization=param, mup_base_width=base, **kw)
    return build_model(cfg, DIGITS)


def gpt(width: int, param: str = "mup", base: int = 32, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(kind="gpt", depth=2, width=width, heads=4, parametrization=param, mup_base_width=base, **kw)
    return build_model(cfg, BYTES)


def test_mlp_roles_and_readout() -> None:
    m = mlp(128)
    spec = spec_of(m)
    assert spec is not None and spec.width_mult == 4
    roles = {n: r.role for n, r in spec.roles.items()}
    assert roles["body.0.weight"] == "input"  # 64 -> width
    assert roles["body.1.fc1.weight"] == "hidden"
    assert roles["body.1.norm.weight"] == "input"  # a gain of width entries
    assert roles["head.weight"] == "output" and roles["head.bias"] == "fixed"
    assert type(m.head) is MupReadout and m.head.multiplier == 0.25
    x = torch.randn(5, 64)
    hidden = m.body(x)
    expected = nn.functional.linear(hidden / 4, m.head.weight, m.head.bias)
    assert torch.allclose(m(x), expected)


def test_init_follows_mup_laws() -> None:
    """torch's default Linear init (std ~ 1/sqrt(fan_in)) is already muP for hidden layers:
    untouched; the readout keeps its base-width std; GPT-2's constant 0.02 is divided by sqrt(m)."""
    spec = spec_of(mlp(512))
    assert spec.init_scale["body.1.fc1.weight"] == 1.0
    assert spec.init_scale["head.weight"] == 4.0  # sqrt(512 / 32)
    wide = mlp(512)
    base_std = mlp(32).head.weight.std().item()
    assert wide.head.weight.std().item() == pytest.approx(base_std, rel=0.1)
    g = gpt(512)
    qkv = g.blocks[0].attn.qkv.weight.std().item()
    assert qkv == pytest.approx(0.02 / 4, rel=0.05)
    assert g.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)  # input: unchanged
    assert torch.count_nonzero(g.blocks[0].attn.proj.weight) == 0  # zero-init residual stays zero


def test_gpt_tied_head_is_an_input_with_the_multiplier_on_the_logits() -> None:
    g = gpt(128)
    spec = spec_of(g)
    assert g.lm_head.weight is g.wte.weight  # still tied
    assert spec.roles["wte.weight"].role == "input"
    assert spec.readouts == {"lm_head": 0.25}
    d, d_base = 128 // 4, 32 // 4
    assert g.blocks[0].attn.scale == pytest.approx(math.sqrt(d_base) / d)


def test_untied_gpt_head_is_an_output() -> None:
    spec = spec_of(gpt(64, tie_embeddings=False))
    assert spec.roles["lm_head.weight"].role == "output"
    assert spec.roles["wte.weight"].role == "input"


@pytest.mark.parametrize("make", [mlp, gpt])
def test_mup_at_the_base_width_is_sp(make) -> None:  # noqa: ANN001
    sp, mu = make(32, "sp"), make(32, "mup")
    for (n, a), (_, b) in zip(sp.state_dict().items(), mu.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    x = torch.randint(0, 256, (2, 16)) if make is gpt else torch.randn(4, 64)
    assert torch.equal(sp(x), mu(x))


def test_mup_draws_the_same_random_numbers_as_sp() -> None:
    """The probes are built inside a forked RNG: the wide model's own tensors are SP's,
    rescaled, and what comes after the build sees the same random state."""
    torch.manual_seed(0)
    build_model(ModelConfig(kind="mlp", width=64, parametrization="sp"), DIGITS)
    after_sp = torch.rand(3)
    torch.manual_seed(0)
    build_model(ModelConfig(kind="mlp", width=64, parametrization="mup", mup_base_width=16), DIGITS)
    assert torch.equal(torch.rand(3), after_sp)


def test_cnn_roles() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(kind="cnn", width=32, depth=2, parametrization="mup", mup_base_width=8)
    m = build_model(cfg, ModelSpec(input_shape=(1, 8, 8), num_classes=10))
    roles = {n: r.role for n, r in spec_of(m).roles.items()}
    assert roles["features.0.weight"] == "input"
    assert roles["features.4.weight"] == "hidden"  # conv, norm, act, pool, conv
    assert roles["classifier.4.weight"] == "output"
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_config_problems_are_listed_together() -> None:
    with pytest.raises(ValueError) as e:
        ModelConfig(kind="gpt", heads=3, width=96, parametrization="mup", mup_base_width=32)
    assert "model.mup_base_width (32) must be divisible by model.heads (3)" in str(e.value)
    with pytest.raises(ValueError, match="built for model.kind in mlp, cnn, gpt"):
        ModelConfig(kind="vae", parametrization="mup")


def test_sp_is_untouched() -> None:
    m = mlp(64, "sp")
    assert spec_of(m) is None and type(m.head) is nn.Linear


def test_a_model_whose_parameters_change_with_width_is_refused() -> None:
    from trainwell.mup import parametrize

    class Odd(nn.Module):
        def __init__(self, w: int) -> None:
            super().__init__()
            self.a = nn.Linear(4, w)
            if w > 8:
                self.b = nn.Linear(w, w)

    with pytest.raises(ConfigError, match="'b.weight' exists at one width and not at another"):
        parametrize(Odd, 32, 8)
