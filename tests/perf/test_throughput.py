"""FLOPs per sample against torch's FlopCounterMode, and the peak FLOP/s table."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainwell.models.cnn import ConvNet
from trainwell.models.gpt import GPT
from trainwell.models.mlp import MLP
from trainwell.train.throughput import (
    PEAK_TFLOPS,
    flops_per_sample,
    math_kind,
    mfu,
    peak_flops,
    peak_flops_for_name,
)


def counted_training_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward + backward, per sample, as torch counts them (matmuls, convs)."""
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops() / x.shape[0]


@pytest.mark.parametrize("residual", [False, True])
def test_mlp_flops_match_flop_counter(residual: bool) -> None:
    torch.manual_seed(0)
    model = MLP(20, 7, width=16, depth=3, residual=residual, norm="layer")
    # the input needs a gradient too, so that every layer does all three matmuls (6N exactly)
    x = torch.randn(5, 20, requires_grad=True)  # (B, D)
    assert flops_per_sample(model, "samples") == pytest.approx(counted_training_flops(model, x))


def test_mlp_flops_overstate_only_the_first_layers_input_gradient() -> None:
    model = MLP(64, 10, width=32, depth=2)
    x = torch.randn(4, 64)  # no input gradient: the first layer skips one matmul
    counted = counted_training_flops(model, x)
    first = 64 * 32
    assert flops_per_sample(model, "samples") == pytest.approx(counted + 2 * first)


def test_conv_flops_match_flop_counter() -> None:
    torch.manual_seed(0)
    model = ConvNet((1, 8, 8), 10, width=8, depth=2)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)  # (B, C, H, W)
    expected = counted_training_flops(model, x)
    assert flops_per_sample(model, "samples", input_shape=(1, 8, 8)) == pytest.approx(expected)


def test_conv_flops_unknown_without_input_shape() -> None:
    assert flops_per_sample(ConvNet((1, 8, 8), 10, width=4, depth=1), "samples") is None


def test_conv_probe_leaves_the_model_in_training_mode() -> None:
    model = ConvNet((1, 8, 8), 10, width=4, depth=1, norm="batch")
    before = [b.clone() for b in model.buffers()]
    flops_per_sample(model, "samples", input_shape=(1, 8, 8))
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))


def test_gpt_uses_its_own_formula_times_tokens() -> None:
    torch.manual_seed(0)
    model = GPT(vocab_size=64, seq_len=16, width=32, depth=2, heads=2)
    got = flops_per_sample(model, "tokens")
    assert got == model.flops_per_token() * 16
    assert flops_per_sample(model, "tokens", seq_len=8) == model.flops_per_token() * 8
    assert flops_per_sample(model, "samples") == got  # a sample of a sequence model: a sequence
    # torch counts the matmuls (not SDPA on a CPU); add PaLM's attention term 12 L C T per
    # token. The model's 6N also counts the norm gains, so allow a small excess.
    x = torch.randint(0, 64, (3, 16))  # (B, T)
    attention = 12 * 2 * 32 * 16 * 16
    counted = counted_training_flops(model, x) + attention
    assert counted <= got <= counted * 1.02


def test_token_task_without_flops_per_token_counts_linear_weights_per_token() -> None:
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 10))
    assert flops_per_sample(model, "tokens", seq_len=4) == 6.0 * 80 * 4
    assert flops_per_sample(model, "tokens") is None  # no sequence length anywhere


def test_unknown_model_gives_none() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.w

    assert flops_per_sample(Scale(), "samples") is None


def test_compiled_model_is_unwrapped() -> None:
    model = MLP(8, 2, width=4, depth=1)
    wrapped = nn.Module()
    wrapped._orig_mod = model  # what torch.compile's OptimizedModule holds
    assert flops_per_sample(wrapped, "samples") == flops_per_sample(model, "samples")


@pytest.mark.parametrize(
    ("name", "kind", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.5),
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100-PCIE-40GB", "tf32", 156.0),
        ("NVIDIA L4", "fp16", 121.0),
        ("NVIDIA L40S", "bf16", 366.0),
        ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ],
)
def test_peak_table(name: str, kind: str, tflops: float) -> None:
    assert peak_flops_for_name(name, kind) == pytest.approx(tflops * 1e12)


def test_peak_unknown_gpu_or_dtype() -> None:
    assert peak_flops_for_name("Some Future GPU", "bf16") is None
    assert peak_flops_for_name("Tesla V100-SXM2-16GB", "bf16") is None  # no bf16 units


def test_table_variants_come_before_their_family() -> None:
    fragments = [f for f, _ in PEAK_TFLOPS]
    for i, frag in enumerate(fragments):
        for later in fragments[i + 1 :]:
            assert frag not in later, f"{later!r} would be shadowed by {frag!r}"


def test_cpu_peak_is_none_unless_overridden() -> None:
    assert peak_flops("cpu", torch.float32) is None
    assert peak_flops("cpu", torch.bfloat16, override=2e12) == 2e12
    with pytest.raises(ValueError, match="must be > 0"):
        peak_flops("cpu", None, override=0.0)


def test_math_kind_follows_matmul_precision() -> None:
    assert math_kind(torch.bfloat16) == "bf16"
    assert math_kind(torch.float16) == "fp16"
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert math_kind(None) == "fp32"
        torch.set_float32_matmul_precision("high")
        assert math_kind(torch.float32) == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)


def test_mfu() -> None:
    assert mfu(6e9, 1000.0, 12e12) == pytest.approx(0.5)
    assert mfu(None, 1000.0, 12e12) is None
    assert mfu(6e9, 1000.0, None) is None
