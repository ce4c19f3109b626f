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


class Dense:
    """One parameter's per-sample gradients as a (B, *shape) tensor."""

    def __init__(self, name: str, grads: Tensor) -> None:
        self.name = name
        self.grads = grads
        self.shape = tuple(grads.shape[1:])
        self.numel = grads[0].numel()

    def _flat(self) -> Tensor:
        return self.grads.reshape(self.grads.shape[0], -1).float()  # (B, n_l)

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

    def elements(self, sample: Tensor, element: Tensor) -> Tensor:
        """g_ij for the (sample, flat element) index pairs."""
        return self._flat()[sample, element]

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
        return self.delta.square().sum(1) * self.a.square().sum(1)

    def dot(self, v: Tensor) -> Tensor:
        return ((self.delta @ v.float()) * self.a).sum(1)  # δ_iᵀ V a_i

    def second_moment(self) -> Tensor:
        return self.delta.square().T @ self.a.square() / self.delta.shape[0]

    def elements(self, sample: Tensor, element: Tensor) -> Tensor:
        cols = self.shape[1]
        return self.delta[sample, element // cols] * self.a[sample, element % cols]

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

    def trace_sigma(self, unbiased: bool = True) -> Tensor:
        """tr(Σ̂) = Σ_j [(1/B) Σ_i g_ij² - g_j²] = (1/B) Σ_i ‖g_i‖² - ‖g‖², times B/(B-1)
        for the unbiased per-sample variance."""
        biased = self.sample_sq.mean() - self.grad_sq
        return biased * (self.n / (self.n - 1)) if unbiased else biased


class PerSampleGrads:
    """Per-sample gradients of every trainable parameter, one piece per parameter, in the
    model's parameter order. ``source`` says where they came from: "vmap" or "backward"."""

    def __init__(self, pieces: list[Piece], n: int, source: str) -> None:
        self.pieces = pieces
        self.n = n
        self.source = source
        self._moments: GradMoments | None = None
        self._dense: dict[str, Tensor] | None = None

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

    def moments(self) -> GradMoments:
        """The shared reductions, once: one pass per piece, no (B, P) temporary."""
        if self._moments is None:
            first = self.pieces[0]
            device = first.grads.device if isinstance(first, Dense) else first.a.device
            mean, sq, dot = {}, torch.zeros(self.n, device=device), torch.zeros(self.n, device=device)
            for p in self.pieces:
                m = mean[p.name] = p.mean()
                sq += p.sample_sq()
                dot += p.dot(m)
            grad_sq = torch.stack([m.square().sum() for m in mean.values()]).sum()
            self._moments = GradMoments(self.n, mean, sq, dot, grad_sq)
        return self._moments

    def project(self, direction: dict[str, Tensor]) -> Tensor:
        """(B,) g_iᵀd for a direction d given per parameter."""
        return torch.stack([p.dot(direction[p.name]) for p in self.pieces]).sum(0)

    def second_moment(self) -> dict[str, Tensor]:
        """(1/B) Σ_i g_ij² per parameter element."""
        return {p.name: p.second_moment() for p in self.pieces}

    def dense(self) -> dict[str, Tensor]:
        """name -> (B, *shape), materialised once (the 2d histogram, tests)."""
        if self._dense is None:
            self._dense = {p.name: p.dense().reshape(self.n, *p.shape) for p in self.pieces}
        return self._dense

    def sample_elements(
        self, k: int, samples: int, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``k`` elements g_ij drawn uniformly (with replacement) from the first ``samples``
        samples and all parameter elements, grouped by parameter: an unbiased sample of the
        population a histogram of every element would count. Indices are drawn on the CPU
        from ``generator`` (never the training stream)."""
        sizes = torch.tensor([p.numel for p in self.pieces])
        ends = sizes.cumsum(0)
        sample = torch.randint(0, samples, (k,), generator=generator)
        flat = torch.randint(0, int(ends[-1]), (k,), generator=generator)
        which = torch.bucketize(flat, ends, right=True)  # piece of each draw
        out = {}
        for i, p in enumerate(self.pieces):
            sel = (which == i).nonzero().squeeze(1)
            start = int(ends[i] - sizes[i])
            device = p.grads.device if isinstance(p, Dense) else p.a.device
            out[p.name] = p.elements(sample[sel].to(device), (flat[sel] - start).to(device))
        return out


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
