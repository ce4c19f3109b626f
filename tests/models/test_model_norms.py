"""Norm layers compute in fp32 under autocast and match their definitions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.models import NORMS, make_norm


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("conv", [False, True])
def test_fp32_output_under_bf16_autocast(kind: str, conv: bool) -> None:
    norm = make_norm(kind, 4, conv=conv)
    x = torch.randn(3, 4, 5, 5) if conv else torch.randn(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x.bfloat16())
    if kind == "none":
        assert out.dtype == torch.bfloat16  # identity passes the input through
    else:
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, norm(x.bfloat16().float()))


def test_conv_layer_and_rms_norm_definitions() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4) * 2 + 1
    flat = x.flatten(1)
    mean, var = flat.mean(1), flat.var(1, unbiased=False)
    expected = (x - mean[:, None, None, None]) / (var[:, None, None, None] + 1e-5).sqrt()
    torch.testing.assert_close(make_norm("layer", 3, conv=True)(x), expected)
    rms = flat.pow(2).mean(1)
    expected = x / (rms[:, None, None, None] + 1e-5).sqrt()
    torch.testing.assert_close(make_norm("rms", 3, conv=True)(x), expected)


def test_layer_norm_bias_switch_and_unknown_kind() -> None:
    assert make_norm("layer", 4, bias=False).bias is None
    assert make_norm("layer", 4).bias is not None
    assert isinstance(make_norm("none", 4), nn.Identity)
    with pytest.raises(ValueError, match="valid: none, batch, layer, rms"):
        make_norm("group", 4)
