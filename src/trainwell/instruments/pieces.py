"""The pieces of :class:`trainwell.instruments.persample.PerSampleGrads`: one parameter's
per-sample gradients held as a dense tensor (``Dense``) or as a Linear layer's factors
(``Outer``), and Linear layers of one shape stacked for batched reductions (``Stack``).
persample.py explains the notation and the reductions."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def add_all(parts: list[Tensor]) -> Tensor:
    """The sum of same-shaped tensors (one stack and one sum; the tensor itself when alone)."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)


def f32(t: Tensor) -> Tensor:
    """``t`` as float32, without a dispatch when it already is (most tensors here)."""
    return t if t.dtype is torch.float32 else t.float()


class Dense:
    """One parameter's per-sample gradients as a (B, *shape) tensor."""

    def __init__(self, name: str, grads: Tensor) -> None:
        self.name = name
        self.grads = grads
        self.shape = tuple(grads.shape[1:])
        self.numel = math.prod(self.shape)

    def _flat(self) -> Tensor:
        return f32(self.grads.reshape(self.grads.shape[0], -1))  # (B, n_l)

    def take(self, k: int) -> Dense:
        return Dense(self.name, self.grads[:k])

    def mean(self) -> Tensor:
        return self.grads.float().mean(0)

    def sample_sq(self) -> Tensor:
        flat = self._flat()
        return torch.linalg.vecdot(flat, flat)  # (B,) row-wise dots

    def dot(self, v: Tensor) -> Tensor:
        """(B,) g_iᵀv for v shaped like the parameter."""
        return self._flat() @ v.reshape(-1).float()

    def second_moment(self) -> Tensor:
        return self.grads.float().square().mean(0)

    def plan(self, k: int, samples: int, gen: torch.Generator) -> tuple[Tensor, ...]:
        """Flat indices of ``k`` elements drawn uniformly from the first ``samples`` samples."""
        sample = torch.randint(0, samples, (k,), generator=gen)
        return (sample * self.numel + torch.randint(0, self.numel, (k,), generator=gen),)

    def elements(self, plan: tuple[Tensor, ...]) -> Tensor:
        """g_ij at the planned flat indices (index_select: several times faster on a CPU
        than indexing by (sample, element) pairs)."""
        return self.grads.reshape(-1).index_select(0, plan[0]).float()

    def dense(self) -> Tensor:
        return self.grads


class Outer:
    """A Linear weight's per-sample gradients g_i = δ_i a_iᵀ, kept as the factors."""

    def __init__(self, name: str, delta: Tensor, a: Tensor) -> None:
        self.name = name
        self.delta, self.a = delta, a  # (B, out), (B, in), float32
        self.shape = (delta.shape[1], a.shape[1])
        self.numel = self.shape[0] * self.shape[1]

    def take(self, k: int) -> Outer:
        return Outer(self.name, self.delta[:k], self.a[:k])

    def mean(self) -> Tensor:
        return self.delta.T @ self.a / self.delta.shape[0]  # (out, in)

    def sample_sq(self) -> Tensor:
        return torch.linalg.vecdot(self.delta, self.delta) * torch.linalg.vecdot(self.a, self.a)

    def dot(self, v: Tensor) -> Tensor:
        return torch.linalg.vecdot(self.delta @ f32(v), self.a)  # δ_iᵀ V a_i

    def second_moment(self) -> Tensor:
        return self.delta.square().T @ self.a.square() / self.delta.shape[0]

    def plan(self, k: int, samples: int, gen: torch.Generator) -> tuple[Tensor, ...]:
        """Flat indices into δ and a of ``k`` elements g_ij = δ_i,row a_i,col."""
        sample, row, col = (torch.randint(0, m, (k,), generator=gen) for m in (samples, *self.shape))
        return sample * self.shape[0] + row, sample * self.shape[1] + col

    def elements(self, plan: tuple[Tensor, ...]) -> Tensor:
        return self.delta.reshape(-1).index_select(0, plan[0]) * self.a.reshape(-1).index_select(0, plan[1])

    def dense(self) -> Tensor:
        return torch.einsum("bo,bi->boi", self.delta, self.a)


Piece = Dense | Outer


class Stack:
    """Outer pieces of one shape, stacked: Δ (L, B, out) and A (L, B, in), so that each
    reduction is one batched product for all of them instead of one per layer (the
    kernels' fixed cost, not their arithmetic, dominates on small layers)."""

    def __init__(self, pieces: list[Outer]) -> None:
        self.pieces = pieces
        self.shape = pieces[0].shape
        self._factors: tuple[Tensor, Tensor] | None = None

    def factors(self) -> tuple[Tensor, Tensor]:
        if self._factors is None:
            ps = self.pieces
            if len(ps) == 1:
                self._factors = ps[0].delta[None], ps[0].a[None]
            else:
                self._factors = torch.stack([p.delta for p in ps]), torch.stack([p.a for p in ps])
        return self._factors

    def gram(self, n: int) -> bool:
        """Whether the Gram form is the cheaper one: L·B²·(out + in) multiply-adds against
        2·L·B·out·in for the mean gradient and g_iᵀg."""
        o, i = self.shape
        return n * (o + i) <= 2 * o * i

    def moments(self, n: int) -> tuple[Tensor, ...]:
        """Either (K,) the (B, B) Gram matrix g_iᵀg_k of these layers, Σ_l (Δ_l Δ_lᵀ) ∘
        (A_l A_lᵀ), or (‖g_i‖², g_iᵀg) directly; and Σ_j g_j."""
        d, a = self.factors()
        total = (d.sum(-1) * a.sum(-1)).sum() / n  # Σ_j g_j = (1/B) Σ_i (Σ_o δ_io)(Σ_k a_ik)
        if self.gram(n):
            k = torch.bmm(d, d.transpose(1, 2)).mul_(torch.bmm(a, a.transpose(1, 2))).sum(0)
            return k, total
        mean = torch.bmm(d.transpose(1, 2), a).div_(n)  # (L, out, in)
        sq = (torch.linalg.vecdot(d, d) * torch.linalg.vecdot(a, a)).sum(0)
        dot = torch.linalg.vecdot(torch.bmm(d, mean), a).sum(0)
        return sq, dot, total

    def project(self, direction: dict[str, Tensor]) -> Tensor:
        """(B,) Σ_l δ_iᵀ V_l a_i: one batched product once the stack is built (a step that
        measures more than this), else one product per layer (stacking would copy every
        factor for a single use, e.g. Alpha's far end)."""
        ps = self.pieces
        if self._factors is None:
            return add_all([p.dot(direction[p.name]) for p in ps])
        d, a = self._factors
        v = f32(direction[ps[0].name])[None] if len(ps) == 1 else torch.stack([f32(direction[p.name]) for p in ps])
        return torch.bmm(d, v).mul_(a).sum((0, 2))
