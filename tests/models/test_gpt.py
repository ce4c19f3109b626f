"""The GPT: every option trains a step; causality, RoPE, zero-init, precision, sampling, FLOPs."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainwell.errors import DataError
from trainwell.models import GPT, LayerNorm, RMSNorm, RotaryEmbedding, apply_rotary

V, T = 11, 8


def tiny(**kw: object) -> GPT:
    args: dict = dict(width=16, depth=2, heads=2) | kw
    return GPT(V, T, **args)


OPTIONS = list(
    itertools.product(
        ["layer", "rms"],
        [False, True],
        ["learned", "rope"],
        [False, True],
        [False, True],
        [0.0, 0.2],
    )
)


@pytest.mark.parametrize("norm,qk_norm,pos,tie,bias,dropout", OPTIONS)
def test_forward_backward_every_option(
    norm: str, qk_norm: bool, pos: str, tie: bool, bias: bool, dropout: float
) -> None:
    torch.manual_seed(0)
    model = tiny(
        norm=norm,
        qk_norm=qk_norm,
        pos=pos,
        tie_embeddings=tie,
        bias=bias,
        dropout=dropout,
        zero_init_residual=False,
    )
    idx = torch.randint(0, V, (3, T))
    logits = model(idx)
    assert logits.shape == (3, T, V)
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (model.lm_head.weight is model.wte.weight) == tie
    assert any(isinstance(m, nn.Linear) and m.bias is not None for m in model.modules()) == bias


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_causal_future_tokens_do_not_change_earlier_logits(pos: str) -> None:
    torch.manual_seed(0)
    model = tiny(pos=pos, zero_init_residual=False).eval()
    idx = torch.randint(0, V, (2, T))
    t = 5
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % V
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t])
    assert not torch.allclose(a[:, t:], b[:, t:])  # the changed position itself does move


def test_rope_scores_depend_on_relative_position_only() -> None:
    torch.manual_seed(0)
    D, n = 8, 12
    cos, sin = RotaryEmbedding(D, n)(n)
    q, k = torch.randn(D), torch.randn(D)
    Q = apply_rotary(q.expand(n, D), cos, sin)  # the same query at every position (n, D)
    K = apply_rotary(k.expand(n, D), cos, sin)
    scores = Q @ K.T  # (n, n): scores[t, s] = <rot_t q, rot_s k>
    for d in range(-3, 4):
        diag = torch.diagonal(scores, offset=d)
        torch.testing.assert_close(diag, diag[0].expand_as(diag), rtol=1e-4, atol=1e-4)
    # rotations keep the length, and position 0 is not rotated
    torch.testing.assert_close(Q.norm(dim=-1), q.norm().expand(n))
    torch.testing.assert_close(Q[0], q)


def test_zero_init_residual_makes_every_block_identity() -> None:
    torch.manual_seed(0)
    model = tiny(zero_init_residual=True, pos="rope")
    x = torch.randn(2, T, 16)
    rope = model.rope(T)
    for block in model.blocks:
        torch.testing.assert_close(block(x, rope), x)
        assert block.attn.proj.weight.abs().sum() == 0


def test_without_zero_init_projections_follow_gpt2_scaling() -> None:
    torch.manual_seed(0)
    model = GPT(V, T, width=256, depth=8, heads=4, zero_init_residual=False, init_std=0.02)
    std = model.blocks[0].mlp.proj.weight.std().item()
    assert abs(std - 0.02 / 4.0) < 0.1 * 0.02 / 4.0  # 0.02 / sqrt(2 * depth)
    assert abs(model.blocks[0].mlp.fc.weight.std().item() - 0.02) < 0.002


def test_no_dropout_on_embeddings() -> None:
    torch.manual_seed(0)
    model = tiny(pos="learned", dropout=0.9).train()
    seen: dict[str, torch.Tensor] = {}

    def grab(module: nn.Module, args: tuple) -> None:
        seen["x"] = args[0]

    model.blocks[0].register_forward_pre_hook(grab)
    idx = torch.randint(0, V, (2, T))
    model(idx)
    torch.testing.assert_close(seen["x"], model.wte(idx) + model.wpe(torch.arange(T)))


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_norms_run_in_fp32_under_bf16_autocast(norm: str) -> None:
    torch.manual_seed(0)
    model = tiny(norm=norm, qk_norm=True, zero_init_residual=False)
    norms = [m for m in model.modules() if isinstance(m, LayerNorm | RMSNorm)]
    assert len(norms) == 2 * 2 + 2 * 2 + 1  # 2 per block, q and k per block, final
    seen = []
    for m in norms:
        m.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randint(0, V, (2, T)))
    assert logits.dtype == torch.bfloat16  # autocast is on for the matmuls
    assert (torch.bfloat16, torch.float32) in seen  # q/k arrive in bf16 and are normed in fp32
    assert all(out == torch.float32 for _, out in seen)
    logits.float().logsumexp(-1).sum().backward()
    for p in model.parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_overfits_one_batch(pos: str) -> None:
    # zero-initialised branches must still learn: the projections get gradient at step 0
    torch.manual_seed(0)
    model = tiny(pos=pos, zero_init_residual=True)
    idx = torch.randint(0, V, (4, T + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_generate_shapes_cropping_and_determinism() -> None:
    torch.manual_seed(0)
    model = tiny(zero_init_residual=False).eval()
    prompt = torch.randint(0, V, (2, 3))
    out = model.generate(prompt, max_new_tokens=10)  # 13 > seq_len 8: the context is cropped
    assert out.shape == (2, 13)
    assert torch.equal(out[:, :3], prompt)
    assert out.min() >= 0 and out.max() < V
    g1 = torch.Generator().manual_seed(1)
    g2 = torch.Generator().manual_seed(1)
    torch.testing.assert_close(
        model.generate(prompt, 5, generator=g1), model.generate(prompt, 5, generator=g2)
    )
    greedy = model.generate(prompt, 4, temperature=0.0)
    torch.testing.assert_close(model.generate(prompt, 4, top_k=1), greedy)
    expected = model(prompt)[:, -1].argmax(-1)
    assert torch.equal(greedy[:, 3], expected)


def test_longer_input_than_context_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="task.seq_len"):
        tiny()(torch.zeros(1, T + 1, dtype=torch.long))


@pytest.mark.parametrize("pos,tie", [("learned", False), ("rope", True)])
def test_num_params_against_hand_count(pos: str, tie: bool) -> None:
    L, C, H = 2, 16, 2
    model = GPT(V, T, width=C, depth=L, heads=H, pos=pos, tie_embeddings=tie, qk_norm=True)
    D = C // H
    # per block: qkv 3C^2 + proj C^2 + fc 4C^2 + proj 4C^2, two LayerNorm gains, q/k gains
    body = L * (12 * C * C + 2 * C + 2 * D) + C  # + final norm
    embeddings = V * C + (T * C if pos == "learned" else 0)
    head = 0 if tie else V * C
    assert model.num_params() == body + embeddings + head
    assert model.num_params(exclude_embeddings=True) == body + head


def test_flops_per_token_matches_a_flop_counter() -> None:
    torch.manual_seed(0)
    L, C = 2, 32
    model = GPT(64, 16, width=C, depth=L, heads=4, zero_init_residual=False)
    idx = torch.randint(0, 64, (2, 16))
    with FlopCounterMode(display=False) as counter:
        model(idx).sum().backward()
    # torch counts the matmuls of forward + backward; attention is the 12 L C T term
    # (PaLM appendix B), and the norm gains add 6 x their count in the formula
    counted = counter.get_total_flops() / idx.numel() + 12 * L * C * 16
    assert abs(model.flops_per_token() - counted) / counted < 0.01


def test_a_checkpoint_with_the_earlier_qkv_row_order_loads_to_the_same_function():
    """State saved before the qkv rows were grouped by head (module version 1, rows [q; k; v])
    is regrouped on load: the loaded model computes what the saved one did."""
    from trainwell.models.gpt import CausalSelfAttention

    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 4, "layernorm", False, True, 0.0)
    x = torch.randn(2, 5, 16)
    want = attn(x, None)
    old = attn.state_dict()
    for name in ("weight", "bias"):  # back to [q; k; v]: the inverse of the regrouping
        t = old[f"qkv.{name}"]
        old[f"qkv.{name}"] = t.reshape(4, 3, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)
    old._metadata[""]["version"] = 1
    fresh = CausalSelfAttention(16, 4, "layernorm", False, True, 0.0)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh(x, None), want)
    again = CausalSelfAttention(16, 4, "layernorm", False, True, 0.0)
    again.load_state_dict(attn.state_dict())  # today's version: loaded as it is
    torch.testing.assert_close(again(x, None), want)
    old._metadata[""]["version"] = 2  # the same rows read as today's layout: another function
    wrong = CausalSelfAttention(16, 4, "layernorm", False, True, 0.0)
    wrong.load_state_dict(old)
    assert not torch.allclose(wrong(x, None), want)
