"""Per-sample gradients, held as cheaply as their source allows, and the few reductions
every per-sample instrument shares.

Notation (Cockpit's): g_i is the gradient of sample i's loss, g = (1/B) Σ_i g_i the batch
gradient, j runs over parameter elements. Every per-sample instrument is closed-form in a
handful of reductions, computed once per due step and cached in the context:

- ``mean``        g, per parameter tensor
- ``sample_sq``   ‖g_i‖² (B,), over all parameters
- ``sample_dot``  g_iᵀg (B,), over all parameters
- ``grad_sq``     ‖g‖²

NormTest, InnerTest, OrthoTest, CABS, TIC, the histogram's spread and the one-batch noise
scale use only these; MeanGSNR and EarlyStopping also need the per-element second moment
(1/B) Σ_i g_ij²; Alpha needs the projections g_iᵀd on the update direction; the histogram
samples individual elements g_ij.

Two sources fill :class:`PerSampleGrads`, one piece per parameter tensor:

- :class:`Dense`: a (B, *shape) tensor per parameter, from ``torch.func`` (vmap over grad)
  on any differentiable model.
- :class:`Outer`: a Linear layer's weight on a batch without a sequence axis, captured
  from the training backward (capture.py): g_i = δ_i a_iᵀ with δ_i (B, out) the output
  gradient and a_i (B, in) the layer input (Goodfellow 2015, "Efficient per-example
  gradient computations"; BackPACK's "batch_l2"/"batch_dot" tricks). Every reduction above
  is then a matrix product over (B, out) and (B, in) factors: ‖g_i‖² = ‖δ_i‖²‖a_i‖²,
  g_iᵀM = δ_iᵀ M a_i, (1/B) Σ_i g_ij² = (δ²)ᵀ(a²)/B; nothing of size B x out x in exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainwell.instruments.base import Context


def f32(t: Tensor) -> Tensor:
    """``t`` as float32, without a dispatch when it already is (most tensors here)."""
    return t if t.dtype is torch.float32 else t.float()


class Dense:
    """One parameter's per-sample gradients as a (B, *shape) tensor."""

    def __init__(self, name: str, grads: Tensor) -> None:
        self.name = name
        self.grads = grads
        self.shape = tuple(grads.shape[1:])
        self.numel = grads[0].numel()

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


@dataclass
class GradMoments:
    n: int
    """B: samples measured."""
    mean: dict[str, Tensor]
    sample_sq: Tensor
    """(B,) ‖g_i‖²."""
    sample_dot: Tensor
    """(B,) g_iᵀg."""
    grad_sq: Tensor
    """0-d ‖g‖²."""
    grad_sum: Tensor
    """0-d Σ_j g_j (the mean element times their number)."""

    def trace_sigma(self, unbiased: bool = True) -> Tensor:
        """tr(Σ̂) = Σ_j [(1/B) Σ_i g_ij² - g_j²] = (1/B) Σ_i ‖g_i‖² - ‖g‖², times B/(B-1)
        for the unbiased per-sample variance."""
        biased = self.sample_sq.mean() - self.grad_sq
        return biased * (self.n / (self.n - 1)) if unbiased else biased


FUSE_NUMEL = 1 << 16
"""Dense pieces up to this size (biases, norm gains) are reduced together as one (B, P)
block: a handful of kernels instead of a handful per tensor (each kernel launch costs
microseconds, which dominate for small tensors)."""


class PerSampleGrads:
    """Per-sample gradients of every trainable parameter, one piece per parameter, in the
    model's parameter order. ``source`` says where they came from: "vmap" or "backward"."""

    def __init__(self, pieces: list[Piece], n: int, source: str) -> None:
        self.pieces = pieces
        self.n = n
        self.source = source
        self._moments: GradMoments | None = None
        self._dense: dict[str, Tensor] | None = None
        small = [p for p in pieces if isinstance(p, Dense) and p.numel <= FUSE_NUMEL]
        self._small: list[Dense] = small if len(small) > 1 else []
        self._own: list[Piece] = [p for p in pieces if not any(p is q for q in self._small)]
        self._block: Tensor | None = None

    @classmethod
    def from_dense(cls, grads: dict[str, Tensor]) -> PerSampleGrads:
        pieces: list[Piece] = [Dense(n, g) for n, g in grads.items()]
        return cls(pieces, next(iter(grads.values())).shape[0], "vmap")

    def take(self, k: int) -> PerSampleGrads:
        """The first ``k`` samples."""
        if k >= self.n:
            return self
        return PerSampleGrads([p.take(k) for p in self.pieces], k, self.source)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pieces]

    def block(self) -> Tensor:
        """(B, Σ numel) the small dense pieces side by side, in ``_small`` order."""
        if self._block is None:
            self._block = torch.cat([p._flat() for p in self._small], 1)
        return self._block

    def moments(self) -> GradMoments:
        """The shared reductions, once: one pass per piece (one for all small ones), no
        (B, P) temporary."""
        if self._moments is None:
            found: dict[str, Tensor] = {}
            sq: Tensor | int = 0
            dot: Tensor | int = 0
            sums = []  # (Σ g_j², Σ g_j) per piece or block
            for p in self._own:
                m = found[p.name] = p.mean()
                sq = sq + p.sample_sq()
                dot = dot + p.dot(m)
                sums.append(torch.stack([m.square().sum(), m.sum()]))
            if self._small:
                block = self.block()
                bm = block.mean(0)
                sq = sq + torch.linalg.vecdot(block, block)
                dot = dot + block @ bm
                sums.append(torch.stack([bm.square().sum(), bm.sum()]))
                for p, m in zip(self._small, bm.split([p.numel for p in self._small]), strict=True):
                    found[p.name] = m.view(p.shape)
            mean = {p.name: found[p.name] for p in self.pieces}
            grad_sq, grad_sum = torch.stack(sums).sum(0).unbind()
            self._moments = GradMoments(self.n, mean, sq, dot, grad_sq, grad_sum)  # type: ignore[arg-type]
        return self._moments

    def project(self, direction: dict[str, Tensor]) -> Tensor:
        """(B,) g_iᵀd for a direction d given per parameter."""
        parts = [p.dot(direction[p.name]) for p in self._own]
        if self._small:
            d = torch.cat([direction[p.name].reshape(-1) for p in self._small]).float()
            parts.append(self.block() @ d)
        return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)

    def second_moment(self) -> dict[str, Tensor]:
        """(1/B) Σ_i g_ij² per parameter element."""
        return {p.name: p.second_moment() for p in self.pieces}

    def dense(self) -> dict[str, Tensor]:
        """name -> (B, *shape), materialised once (the 2d histogram, tests)."""
        if self._dense is None:
            self._dense = {p.name: p.dense().reshape(self.n, *p.shape) for p in self.pieces}
        return self._dense

    def element_plan(self, k: int, samples: int, generator: torch.Generator) -> ElementPlan:
        """Where to read about ``k`` elements g_ij, drawn uniformly (with replacement) from
        the first ``samples`` samples, stratified by parameter: tensor l gets
        round(k · numel_l / numel) draws, so that the draws pooled are a uniform sample of
        all elements. Independent of the gradient values, so one plan serves every step
        (the histogram instrument keeps it): reading it costs one gather per large tensor
        and one for all small ones."""
        total = sum(p.numel for p in self.pieces)
        index = {p.name: i for i, p in enumerate(self.pieces)}
        device = self._device()

        def draws(p: Piece) -> int:
            return max(1, round(k * p.numel / total))

        own = [tuple(i.to(device) for i in p.plan(draws(p), samples, generator)) for p in self._own]
        which = [torch.full((draws(p),), index[p.name], dtype=torch.int32) for p in self._own]
        small: Tensor | None = None
        if self._small:
            flat, start = [], 0
            width = sum(p.numel for p in self._small)
            for p in self._small:
                sample = torch.randint(0, samples, (draws(p),), generator=generator)
                column = torch.randint(0, p.numel, (draws(p),), generator=generator) + start
                flat.append(sample * width + column)
                which.append(torch.full((draws(p),), index[p.name], dtype=torch.int32))
                start += p.numel
            small = torch.cat(flat).to(device)
        return ElementPlan(own, small, torch.cat(which).to(device))

    def elements_at(self, plan: ElementPlan) -> Tensor:
        """The planned elements, in the plan's order (``plan.piece`` says whose each is)."""
        parts = [p.elements(idx) for p, idx in zip(self._own, plan.own, strict=True)]
        if plan.small is not None:
            parts.append(self.block().reshape(-1).index_select(0, plan.small))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _device(self) -> torch.device:
        first = self.pieces[0]
        return first.grads.device if isinstance(first, Dense) else first.a.device


@dataclass
class ElementPlan:
    """Positions of sampled per-sample gradient elements (PerSampleGrads.element_plan)."""

    own: list[tuple[Tensor, ...]]
    """Index tensors per large piece."""
    small: Tensor | None
    """Flat indices into the block of small pieces."""
    piece: Tensor
    """(k,) int32: the piece (index in ``pieces``) of each element, in reading order."""


def moments(ctx: Context) -> GradMoments:
    """The shared reductions of the context's per-sample gradients (cached per step)."""
    return _per_sample(ctx).moments()


def element_second_moment(ctx: Context) -> dict[str, Tensor]:
    """(1/B) Σ_i g_ij² per parameter element (cached per step). Only the per-element
    quantities (MeanGSNR, EarlyStopping) need it."""
    cached = ctx.cache.get("second_moment")
    if cached is None:
        cached = ctx.cache["second_moment"] = _per_sample(ctx).second_moment()
    return cached


def _per_sample(ctx: Context) -> PerSampleGrads:
    if ctx.per_sample is None:
        raise RuntimeError(
            "per-sample moments need per-sample gradients: declare PER_SAMPLE in the instrument's needs"
        )
    return ctx.per_sample
