"""Histograms of per-sample gradient elements (1d) and of gradient x parameter (2d).

Counts go to the run report (``runner.histograms()``); a few summary numbers go to the
metrics. Binning is ``bincount`` over computed bin indices: one scatter per parameter
tensor, on any device (``torch.histc`` is slower on CPU and has no 2d form).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trainwell.instruments.base import PER_SAMPLE, UPDATE, Context, Histogram, Metrics, key
from trainwell.instruments.persample import ElementPlan, PerSampleGrads, moments

SEED = 0x4157
"""Seed of the element sample: the same positions on a rerun."""


def bin_index(x: Tensor, limit: float, bins: int) -> Tensor:
    """Bin of each element over (-limit, limit) as int32; values outside, and non-finite
    ones, are clamped into the edge bins (as Cockpit). A NaN per-sample gradient implies a
    NaN mean gradient, a step the guards skip, so the edge bins lose nothing worth a slot."""
    scaled = x.float().mul(bins / (2 * limit)).nan_to_num_(nan=math.inf)  # in bin widths
    if bins % 2 == 0:
        # an edge sits at 0: floor first, then shift, so that tiny negative gradients (very
        # common) are not rounded into the first positive bin by float32 (x + limit == limit)
        idx = scaled.floor_().clamp_(-(bins // 2), bins // 2 - 1).add_(bins // 2)
    else:
        idx = scaled.add_(bins / 2).floor_().clamp_(0, bins - 1)
    return idx.to(torch.int32)  # int32 halves the memory traffic of the scatter that follows


class GradHist1d:
    """Histogram of all per-sample gradient elements g_ij over (−2, 2) in 100 bins,
    outliers clamped into the edge bins (Cockpit's GradHist1d), globally and per
    parameter tensor (for the report).

    Metrics: ``inst/grad_hist1d/edge_frac`` (share of elements in the two edge bins, where
    everything beyond ±2 is clamped), ``inst/grad_hist1d/center_frac`` (share in the two
    bins around 0), ``inst/grad_hist1d/std`` (the elements' standard deviation, exact).
    Binned are the elements of the first ``samples`` samples (config ``hist_samples``; 0 =
    all measured): all of them when they are at most ``elements`` (config
    ``hist_elements``; 0 = always all, as Cockpit), else ``elements`` of them drawn
    uniformly at random (a seeded generator of its own, not the training stream; the same
    positions every step, on every step's new samples). The counts are then a sample of
    the histogram: a share p is estimated with a standard
    error of sqrt(p(1 − p)/elements), below 0.004 at the default 2^14.

    Needs: per_sample_grads. Cost: one scatter over the binned elements; sampling keeps it
    fixed however large the model (binning every element of 64 samples of the digits MLP
    took ~15 ms on a CPU core, 5x the training step).
    Reading (Cockpit's preprocessing and layer-wise experiments): mass piled at the edges
    means exploding or mis-scaled gradients (e.g. inputs left in 0-255); almost everything
    in the centre bins means vanishing gradients, and the per-layer histograms show which
    layers (Cockpit's sigmoid 3c3d).
    """

    name = "grad_hist1d"
    needs = frozenset({PER_SAMPLE})

    def __init__(
        self, bins: int = 100, limit: float = 2.0, samples: int = 0, elements: int = 0
    ) -> None:
        self.bins, self.limit, self.samples, self.elements = bins, limit, samples, elements
        self._edges: Tensor | None = None
        self._plan: tuple[object, ElementPlan, Tensor] | None = None
        """(shapes it was drawn for, per-tensor indices, bin offset of each element)."""

    def measure(self, ctx: Context) -> Metrics:
        ps = ctx.per_sample
        assert ps is not None
        n = ps.n if self.samples <= 0 else min(self.samples, ps.n)
        if self._edges is None:
            self._edges = torch.linspace(-self.limit, self.limit, self.bins + 1)
        edges = self._edges
        names = ps.names
        if 0 < self.elements < n * sum(p.numel for p in ps.pieces):
            plan, offsets = self._element_plan(ps, n)
            values = ps.elements_at(plan)
        else:
            dense = ps.dense()
            parts = [dense[k][:n].reshape(-1) for k in names]
            values = torch.cat(parts)
            offsets = torch.repeat_interleave(
                torch.arange(len(parts), device=values.device) * self.bins,
                torch.tensor([t.numel() for t in parts], device=values.device),
            ).to(torch.int32)
        # one scatter for every tensor's histogram: cell = tensor * bins + bin
        cells = bin_index(values, self.limit, self.bins).add_(offsets)
        counts = torch.bincount(cells, minlength=len(names) * self.bins).view(len(names), self.bins)
        total = counts.sum(0)
        rows = torch.cat([counts, total[None]]).cpu().unbind()  # one copy for all histograms
        for name, row in zip(names, rows, strict=False):
            ctx.histograms[f"{self.name}/{name}"] = Histogram(ctx.step, row, (edges,))
        ctx.histograms[self.name] = Histogram(ctx.step, rows[-1], (edges,))
        elements = total.sum().clamp_min(1)
        mid = self.bins // 2
        center = total[mid - 1 : mid + 1].sum() if self.bins % 2 == 0 else total[mid]
        m = moments(ctx)
        count = ps.numel
        # mean and second moment over samples and elements (exact, from the shared moments)
        mean = m.grad_sum / count
        second = m.sample_sq.mean() / count
        return {
            key(self.name, "edge_frac"): (total[0] + total[-1]) / elements,
            key(self.name, "center_frac"): center / elements,
            key(self.name, "std"): (second - mean**2).clamp_min(0).sqrt(),
        }


    def _element_plan(self, ps: PerSampleGrads, n: int) -> tuple[ElementPlan, Tensor]:
        """The sampled elements' positions, drawn once per shape of the per-sample gradients
        (from a seeded generator of its own): the batches change every step, the positions
        read need not. Returns the plan and each element's bin offset (piece × bins)."""
        shapes = (n, tuple((p.name, p.numel, type(p).__name__) for p in ps.pieces))
        if self._plan is None or self._plan[0] != shapes:
            gen = torch.Generator().manual_seed(SEED)
            plan = ps.element_plan(self.elements, n, gen)
            self._plan = (shapes, plan, plan.piece * self.bins)
        return self._plan[1], self._plan[2]


class GradHist2d:
    """Joint histogram of per-sample gradient elements (x: 40 bins over (−1, 1)) against
    the value of their parameter at θ_t (y: 50 bins over (−2, 2)), clamped to the range
    (Cockpit's GradHist2d). Counts go to the report; metrics:
    ``inst/grad_hist2d/grad_clamped_frac`` and ``inst/grad_hist2d/param_clamped_frac``.

    Needs: per_sample_grads, update (θ_t). Cost: one scatter over samples x parameters
    (the most expensive Cockpit quantity on a GPU: atomics).
    Reading: the heat map shows whether large gradients sit on large weights (a layer
    being pushed out of range) and whether the weights spread beyond their initial scale;
    with mis-scaled data both marginals are far outside the usual range.
    """

    name = "grad_hist2d"
    needs = frozenset({PER_SAMPLE, UPDATE})

    def __init__(
        self,
        bins: tuple[int, int] = (40, 50),
        limits: tuple[float, float] = (1.0, 2.0),
        samples: int = 0,
    ) -> None:
        self.bins, self.limits, self.samples = bins, limits, samples

    def measure(self, ctx: Context) -> Metrics:
        psg, theta = ctx.per_sample_grads, ctx.params_before
        assert psg is not None and theta is not None
        (gx, py), (lx, ly) = self.bins, self.limits
        first = next(iter(psg.values()))
        n = first.shape[0] if self.samples <= 0 else min(self.samples, first.shape[0])
        cells = gx * py
        total = torch.zeros(cells, dtype=torch.long, device=first.device)
        g_out = torch.zeros((), dtype=torch.long, device=first.device)
        p_out = torch.zeros((), dtype=torch.long, device=first.device)
        p_count = 0
        for name, g in psg.items():
            x = g[:n].reshape(n, -1)  # (n, P_l)
            p = theta[name].reshape(-1)  # (P_l,)
            cell = bin_index(x, lx, gx).mul_(py).add_(bin_index(p, ly, py))  # (n, P_l)
            total += torch.bincount(cell.reshape(-1), minlength=cells)
            g_out += (x.abs() >= lx).sum()
            p_out += (p.abs() >= ly).sum()
            p_count += p.numel()
        ctx.histograms[self.name] = Histogram(
            ctx.step,
            total.view(gx, py).cpu(),
            (torch.linspace(-lx, lx, gx + 1), torch.linspace(-ly, ly, py + 1)),
            axes=("gradient", "parameter"),
        )
        return {
            key(self.name, "grad_clamped_frac"): g_out / max(n * p_count, 1),
            key(self.name, "param_clamped_frac"): p_out / max(p_count, 1),
        }
