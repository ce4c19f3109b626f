"""A decoder-only transformer language model (GPT; Radford et al. 2019), pre-norm.

The choices that make it train stably follow the project's seeds: pre-norm residual
blocks (LayerNorm or RMSNorm, computed in fp32), QK-norm (Dehghani et al. 2023), no
biases by default, no dropout on embeddings (OPT), zero-initialised residual output
projections so each block starts as the identity, and rotary or learned positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainwell.errors import DataError
from trainwell.models.activations import make_activation
from trainwell.models.init import feeds, zero_init
from trainwell.models.norms import make_norm
from trainwell.models.rope import RotaryEmbedding, apply_rotary

Rope = tuple[Tensor, Tensor] | None


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()  # no module work when off (the default)


def qkv_rows_by_head(t: Tensor, heads: int) -> Tensor:
    """A fused qkv weight (3C, C) or bias (3C,) from the [q; k; v] row order to rows grouped
    by head ([q_h, k_h, v_h] for each head h)."""
    return t.reshape(3, heads, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


class CausalSelfAttention(nn.Module):
    _version = 2
    """The state's layout: 2, the qkv rows grouped by head; 1 (checkpoints written before),
    [q; k; v], converted when loaded (``_load_from_state_dict``)."""

    def __init__(
        self, width: int, heads: int, norm: str, qk_norm: bool, bias: bool, dropout: float,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = scale  # of the logits q.k; None: 1/sqrt(head_dim). muP: 1/head_dim
        self.qkv = feeds(nn.Linear(width, 3 * width, bias=bias), None)
        self.proj = feeds(nn.Linear(width, width, bias=bias), None)
        # QK-norm: normalise each head's queries and keys so attention logits cannot grow
        # without bound (Dehghani et al. 2023)
        self.q_norm = make_norm(norm, self.head_dim, bias=bias) if qk_norm else None
        self.k_norm = make_norm(norm, self.head_dim, bias=bias) if qk_norm else None
        self.attn_dropout = dropout
        self.resid_drop = _dropout(dropout)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, *args: object) -> None:
        # a state saved with a version (module state dicts carry one) older than 2 holds the
        # qkv rows as [q; k; v]: regroup them, or the loaded model would compute another function
        if local_metadata.get("version", self._version) < 2:
            for name in ("weight", "bias"):
                key = f"{prefix}qkv.{name}"
                if key in state_dict:
                    state_dict[key] = qkv_rows_by_head(state_dict[key], self.heads)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def forward(self, x: Tensor, rope: Rope) -> Tensor:
        B, T, C = x.shape
        # the qkv rows are grouped by head, [q_h, k_h, v_h] for h = 0..H-1 (Megatron-LM's
        # layout): a tensor-parallel rank holding a contiguous block of rows then holds whole
        # heads, and -1 is its number of heads (all of them in one process; dist/tensor.py)
        qkv = self.qkv(x).view(B, T, -1, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # (B, H, T, D) each
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=True,
            scale=self.scale,
        )  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, C), or C / tp on a tensor-parallel rank
        return self.resid_drop(self.proj(y))  # (B, T, C)


class FeedForward(nn.Module):
    """Linear(C, 4C) -> activation -> Linear(4C, C): the 4x expansion of GPT-2."""

    def __init__(self, width: int, activation: str, bias: bool, dropout: float) -> None:
        super().__init__()
        self.fc = feeds(nn.Linear(width, 4 * width, bias=bias), activation)
        self.act = make_activation(activation)
        self.proj = feeds(nn.Linear(4 * width, width, bias=bias), None)
        self.drop = _dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): pre-norm keeps the residual path clean."""

    def __init__(
        self,
        width: int,
        heads: int,
        activation: str,
        norm: str,
        qk_norm: bool,
        bias: bool,
        dropout: float,
        attn_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, width, bias=bias)
        self.attn = CausalSelfAttention(width, heads, norm, qk_norm, bias, dropout, attn_scale)
        self.norm2 = make_norm(norm, width, bias=bias)
        self.mlp = FeedForward(width, activation, bias, dropout)

    def forward(self, x: Tensor, rope: Rope) -> Tensor:  # (B, T, C) -> (B, T, C)
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size); T <= seq_len.

    ``attn_scale`` multiplies the attention logits q.k (None: SDPA's 1/sqrt(head_dim));
    muP passes one proportional to 1/head_dim (Yang et al. 2022, trainwell.mup)."""

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        activation: str = "gelu",
        norm: str = "layer",
        qk_norm: bool = True,
        bias: bool = False,
        pos: str = "rope",
        dropout: float = 0.0,
        tie_embeddings: bool = True,
        init_std: float = 0.02,
        zero_init_residual: bool = True,
        attn_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.width, self.depth, self.heads = width, depth, heads
        self.tie_embeddings = tie_embeddings
        self.wte = nn.Embedding(vocab_size, width)
        # no dropout on the embeddings (OPT, Zhang et al. 2022): it only adds noise to the input
        self.wpe = nn.Embedding(seq_len, width) if pos == "learned" else None
        self.rope = RotaryEmbedding(width // heads, seq_len) if pos == "rope" else None
        self.blocks = nn.ModuleList(
            Block(width, heads, activation, norm, qk_norm, bias, dropout, attn_scale)
            for _ in range(depth)
        )
        self.norm_f = make_norm(norm, width, bias=bias)
        self.lm_head = feeds(nn.Linear(width, vocab_size, bias=False), None)
        if tie_embeddings:
            self.lm_head.weight = self.wte.weight  # one (V, C) matrix, read both ways
        self._init_weights(init_std, zero_init_residual)

    def _init_weights(self, std: float, zero_init_residual: bool) -> None:
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear | nn.Embedding):
                    m.weight.normal_(0.0, std)  # GPT-2: N(0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
            for block in self.blocks:
                for proj in (block.attn.proj, block.mlp.proj):
                    if zero_init_residual:
                        zero_init(proj)  # every block starts as the identity
                    else:
                        # GPT-2: scale by 1/sqrt(#residual additions) so the stream's
                        # variance does not grow with depth
                        proj.weight.normal_(0.0, std / math.sqrt(2 * self.depth))
            for block in self.blocks:
                # drawn in the [q; k; v] row order, then regrouped by head: a seed gives the
                # function it gave before the rows were grouped (and every figure measured then)
                qkv = block.attn.qkv
                qkv.weight.copy_(qkv_rows_by_head(qkv.weight, block.attn.heads))
                if qkv.bias is not None:
                    qkv.bias.copy_(qkv_rows_by_head(qkv.bias, block.attn.heads))

    @property
    def final_layer(self) -> nn.Module:
        """The output layer (its input is the activation whose norm OPT watched)."""
        return self.lm_head

    def forward(self, idx: Tensor) -> Tensor:
        B, T = idx.shape
        if T > self.seq_len:
            raise DataError(
                f"a sequence of {T} tokens is longer than the gpt's context of {self.seq_len} "
                "(task.seq_len); crop the input or build the model with a longer seq_len"
            )
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        rope = self.rope(T) if self.rope is not None else None
        for block in self.blocks:
            x = block(x, rope)
        return self.lm_head(self.norm_f(x))  # (B, T, V)

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Extend (B, T) token ids by sampling ``max_new_tokens`` tokens -> (B, T + new).

        The context is cropped to the last ``seq_len`` tokens. temperature 0 is greedy;
        ``top_k`` keeps only the k most likely tokens. The caller picks the mode (call
        ``model.eval()`` first to turn dropout off).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.seq_len :])[:, -1, :].float()  # (B, V)
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, nxt), dim=1)
        return idx

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (tied ones once). ``exclude_embeddings`` leaves out the
        lookup tables (token and learned position embeddings) as Kaplan et al. 2020 do;
        with tied embeddings that also leaves out the output projection."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward) at full context: 6N + 12 L C T.

        N counts every weight used in a matmul: the non-embedding parameters plus the
        output projection (a matmul even when tied to the lookup table); 6N is 2 FLOPs
        per multiply-add, times 3 for forward and backward. 12 L C T is the attention
        score and value products (PaLM, Chowdhery et al. 2022, appendix B, with heads x
        head_dim = C and T = seq_len). Used for MFU.
        """
        n = self.num_params(exclude_embeddings=True)
        if self.tie_embeddings:
            n += self.lm_head.weight.numel()
        return 6.0 * n + 12.0 * self.depth * self.width * self.seq_len
