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
from trainwell.instruments.pieces import Dense, Outer, Piece, Stack, add_all


class GradMoments:
    """The shared reductions of one step's per-sample gradients."""

    def __init__(self, source: PerSampleGrads, sample_sq: Tensor, sample_dot: Tensor, grad_sum: Tensor) -> None:
        self.n = source.n
        """B: samples measured."""
        self.sample_sq = sample_sq
        """(B,) ‖g_i‖²."""
        self.sample_dot = sample_dot
        """(B,) g_iᵀg."""
        self.grad_sq = sample_dot.mean()
        """0-d ‖g‖² = (1/B) Σ_i g_iᵀg."""
        self.grad_sum = grad_sum
        """0-d Σ_j g_j (the mean element times their number)."""
        self._source = source

    @property
    def mean(self) -> dict[str, Tensor]:
        """g per parameter tensor (computed on first use: most instruments need only the
        scalars above)."""
        return self._source.mean()

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
    model's parameter order. ``source`` says where they came from: "vmap" or "backward".

    For the reductions the pieces are regrouped: Outer pieces of one shape into a
    :class:`Stack` (batched products), small Dense pieces side by side into one (B, P)
    block, the other Dense pieces on their own."""

    def __init__(self, pieces: list[Piece], n: int, source: str) -> None:
        self.pieces = pieces
        self.n = n
        self.source = source
        self.numel = sum(p.numel for p in pieces)
        self._moments: GradMoments | None = None
        self._mean: dict[str, Tensor] | None = None
        self._dense: dict[str, Tensor] | None = None
        small = [p for p in pieces if isinstance(p, Dense) and p.numel <= FUSE_NUMEL]
        self._small: list[Dense] = small if len(small) > 1 else []
        fused = {id(p) for p in self._small}
        self._own: list[Dense] = [p for p in pieces if isinstance(p, Dense) and id(p) not in fused]
        shapes: dict[tuple[int, ...], list[Outer]] = {}
        for p in pieces:
            if isinstance(p, Outer):
                shapes.setdefault(p.shape, []).append(p)
        self._stacks = [Stack(ps) for ps in shapes.values()]
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
        """The shared reductions, once, without a (B, P) temporary: per stack of Linear
        layers a Gram matrix or two batched products, per other piece (one for all small
        ones) a row-wise dot and a product."""
        if self._moments is None:
            n = self.n
            gram: Tensor | None = None
            sq, dot, sums = [], [], []
            for s in self._stacks:
                *parts, total = s.moments(n)
                sums.append(total)
                if len(parts) == 1:
                    gram = parts[0] if gram is None else gram + parts[0]
                else:
                    sq.append(parts[0])
                    dot.append(parts[1])
            dense = [(p._flat(), p) for p in self._own]
            if self._small:
                dense.append((self.block(), None))
            for flat, _ in dense:
                m = flat.mean(0)
                sq.append(torch.linalg.vecdot(flat, flat))
                dot.append(flat @ m)
                sums.append(m.sum())
            if gram is not None:
                sq.append(gram.diagonal())
                dot.append(gram.mean(1))
            self._moments = GradMoments(self, add_all(sq), add_all(dot), add_all(sums))
        return self._moments

    def mean(self) -> dict[str, Tensor]:
        """g per parameter tensor, in parameter order (cached)."""
        if self._mean is None:
            own = [*self._own, *(p for s in self._stacks for p in s.pieces)]
            found: dict[str, Tensor] = {p.name: p.mean() for p in own}
            if self._small:
                bm = self.block().mean(0)
                for p, m in zip(self._small, bm.split([p.numel for p in self._small]), strict=True):
                    found[p.name] = m.view(p.shape)
            self._mean = {p.name: found[p.name] for p in self.pieces}
        return self._mean

    def project(self, direction: dict[str, Tensor]) -> Tensor:
        """(B,) g_iᵀd for a direction d given per parameter."""
        parts = [s.project(direction) for s in self._stacks]
        parts += [p.dot(direction[p.name]) for p in self._own]
        if self._small:
            d = torch.cat([direction[p.name].reshape(-1) for p in self._small]).float()
            parts.append(self.block() @ d)
        return add_all(parts)

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
        (the histogram instrument keeps it): reading it costs two gathers per stack of
        Linear layers, one per other large tensor and one for all small ones."""
        index = {p.name: i for i, p in enumerate(self.pieces)}
        device = self._device()
        which: list[Tensor] = []

        def draws(p: Piece) -> int:
            count = max(1, round(k * p.numel / self.numel))
            which.append(torch.full((count,), index[p.name], dtype=torch.int32))
            return count

        stacks = []
        for s in self._stacks:
            (o, i), at_d, at_a = s.shape, [], []
            for layer, p in enumerate(s.pieces):  # flat positions in Δ (L, B, out), A (L, B, in)
                count = draws(p)
                sample, row, col = (torch.randint(0, m, (count,), generator=generator) for m in (samples, o, i))
                at_d.append((layer * self.n + sample) * o + row)
                at_a.append((layer * self.n + sample) * i + col)
            stacks.append((torch.cat(at_d).to(device), torch.cat(at_a).to(device)))
        own = [tuple(i.to(device) for i in p.plan(draws(p), samples, generator)) for p in self._own]
        small: Tensor | None = None
        if self._small:
            flat, start = [], 0
            width = sum(p.numel for p in self._small)
            for p in self._small:
                count = draws(p)
                sample = torch.randint(0, samples, (count,), generator=generator)
                flat.append(sample * width + torch.randint(0, p.numel, (count,), generator=generator) + start)
                start += p.numel
            small = torch.cat(flat).to(device)
        return ElementPlan(stacks, own, small, torch.cat(which).to(device))

    def elements_at(self, plan: ElementPlan) -> Tensor:
        """The planned elements, in the plan's order (``plan.piece`` says whose each is)."""
        parts = []
        for s, (at_d, at_a) in zip(self._stacks, plan.stacks, strict=True):
            d, a = s.factors()
            parts.append(d.reshape(-1).index_select(0, at_d).mul_(a.reshape(-1).index_select(0, at_a)))
        parts += [p.elements(idx) for p, idx in zip(self._own, plan.own, strict=True)]
        if plan.small is not None:
            parts.append(self.block().reshape(-1).index_select(0, plan.small))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _device(self) -> torch.device:
        first = self.pieces[0]
        return first.grads.device if isinstance(first, Dense) else first.a.device


@dataclass
class ElementPlan:
    """Positions of sampled per-sample gradient elements (PerSampleGrads.element_plan)."""

    stacks: list[tuple[Tensor, Tensor]]
    """Flat indices into Δ and A per stack of Linear layers."""
    own: list[tuple[Tensor, ...]]
    """Index tensors per other large piece."""
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
