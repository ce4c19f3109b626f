"""Activation statistics, dead ReLUs, saturation, the final layer's input and attention logits."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from inst_helpers import ClsTask, cls_batch, mlp, runner_for, train_step
from torch import nn

from trainwell.instruments.activations import max_attention_logit
from trainwell.tasks.base import LossOutput, Task


def _sgd0(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.0)


def test_activation_stats_dead_relus_and_saturation() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch(n=10)
    with torch.no_grad():
        model[0].bias[:3] = -100.0  # three ReLU units can never fire
        model[2].weight.mul_(30.0)  # tanh saturates
    x, _ = batch
    with torch.no_grad():
        h1 = model[1](model[0](x))  # (B, 8)
        h2 = model[3](model[2](h1))  # (B, 8)
    runner = runner_for(
        model, task, preset="off", include=("activations", "final_act"), saturation_eps=0.01
    )
    m = train_step(model, task, batch, _sgd0(model), runner, 0)
    assert m["inst/act_mean/1"] == pytest.approx(float(h1.mean()), rel=1e-5)
    assert m["inst/act_std/1"] == pytest.approx(float(h1.std()), rel=1e-5)
    assert m["inst/act_std/3"] == pytest.approx(float(h2.std()), rel=1e-5)
    dead = float((~(h1 > 0).any(0)).float().mean())
    assert dead >= 3 / 8
    assert m["inst/act_dead_frac/1"] == pytest.approx(dead)
    assert m["inst/act_dead_frac"] == pytest.approx(dead)
    saturated = float((h2.abs() > 0.99).float().mean())
    assert saturated > 0.3
    assert m["inst/act_saturated_frac/3"] == pytest.approx(saturated)
    assert m["inst/final_act_rms"] == pytest.approx(float(h2.square().mean().sqrt()), rel=1e-5)


def test_sigmoid_saturation_counts_both_asymptotes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.mul_(50.0)
    task, batch = ClsTask(), cls_batch(n=10)
    with torch.no_grad():
        s = model[1](model[0](batch[0]))
    runner = runner_for(model, task, preset="off", include=("activations",), saturation_eps=0.05)
    m = train_step(model, task, batch, _sgd0(model), runner, 0)
    expected = float(((s < 0.05) | (s > 0.95)).float().mean())
    assert 0 < expected < 1
    assert m["inst/act_saturated_frac/1"] == pytest.approx(expected)


def test_dead_units_of_images_are_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        model[0].bias[0] = -100.0  # channel 0 is dead at every position
        model[0].bias[1:] = 100.0  # the others fire everywhere
    x, y = torch.randn(5, 1, 6, 6), torch.randint(0, 3, (5,))
    runner = runner_for(model, ClsTask(), preset="off", include=("activations",))
    m = train_step(model, ClsTask(), (x, y), _sgd0(model), runner, 0)
    assert m["inst/act_dead_frac/1"] == pytest.approx(0.25)


def test_recording_leaves_no_hook_behind() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    runner = runner_for(
        model, task, preset="off", include=("activations", "final_act", "attention")
    )
    train_step(model, task, batch, _sgd0(model), runner, 0)
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks


class TinyAttention(nn.Module):
    def __init__(self, width: int = 8, heads: int = 2, causal: bool = True) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return (
            F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            .transpose(1, 2)
            .reshape(b, t, c)
        )


class SeqModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.attn = TinyAttention()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x)).mean(1)  # (B, 3)


def _reference_logit(attn: TinyAttention, x: torch.Tensor) -> float:
    b, t, c = x.shape
    with torch.no_grad():
        q, k, _ = attn.qkv(x).view(b, t, 3, attn.heads, c // attn.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-2, -1) / math.sqrt(c // attn.heads)  # (B, H, T, T)
    best = -math.inf
    for i in range(t):
        for j in range(i + 1):  # causal: position i sees 0..i
            best = max(best, float(logits[..., i, j].max()))
    return best


def test_attention_logit_max_through_sdpa() -> None:
    model = SeqModel()
    with torch.no_grad():
        model.attn.qkv.weight.mul_(4.0)  # larger logits; the masked (future) ones must not count
    x, y = torch.randn(3, 5, 8), torch.randint(0, 3, (3,))
    runner = runner_for(model, ClsTask(), preset="off", include=("attention",))
    m = train_step(model, ClsTask(), (x, y), _sgd0(model), runner, 0)
    expected = _reference_logit(model.attn, x)
    assert m["inst/attn_logit_max/attn"] == pytest.approx(expected, rel=1e-5)
    assert m["inst/attn_logit_max"] == pytest.approx(expected, rel=1e-5)


def test_max_attention_logit_honours_masks_and_scale() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    full = (q @ k.transpose(-2, -1))[0, 0]  # (3, 3)
    mask = torch.tensor([[True, False, False], [True, True, False], [False, True, True]])
    got = max_attention_logit(q, k, None, attn_mask=mask, scale=1.0)
    assert float(got) == pytest.approx(float(full[mask].max()))


class HandAttention(nn.Module):
    """Attention written by hand (no sdpa): cannot be seen, must be explained."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(x)
        w = torch.softmax(h @ h.transpose(-2, -1), dim=-1)
        return self.head(w @ h).mean(1)


def test_attention_computed_by_hand_is_noted_not_hidden() -> None:
    model = HandAttention()
    x, y = torch.randn(3, 5, 8), torch.randint(0, 3, (3,))
    runner = runner_for(model, ClsTask(), preset="off", include=("attention",))
    m = train_step(model, ClsTask(), (x, y), _sgd0(model), runner, 0)
    assert "inst/attn_logit_max" not in m
    assert any("scaled_dot_product_attention" in w and "attention" in w for w in runner.warnings)


class GptTask(Task):
    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        idx, tgt = batch
        logits = model(idx)  # (B, T, V)
        ps = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none").sum(1)  # (B,)
        return LossOutput(ps.sum(), torch.tensor(float(tgt.numel())), {}, ps)


def test_attention_and_final_act_on_trainwells_gpt() -> None:
    from trainwell.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=11, seq_len=6, width=8, depth=2, heads=2)
    idx = torch.randint(0, 11, (3, 6))
    runner = runner_for(
        model, GptTask(), preset="off", include=("attention", "final_act", "noise_scale_ps")
    )
    m = train_step(model, GptTask(), (idx, idx), _sgd0(model), runner, 0)
    assert {"inst/attn_logit_max/blocks.0.attn", "inst/attn_logit_max/blocks.1.attn"} <= set(m)
    assert math.isfinite(m["inst/attn_logit_max"]) and m["inst/final_act_rms"] > 0
    assert math.isfinite(m["inst/noise_scale_ps"])
