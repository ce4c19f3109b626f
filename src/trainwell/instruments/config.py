"""The ``[instruments]`` section: which quantities to measure, and how often."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from trainwell.section import Section

Preset = Literal["off", "minimal", "economy", "business", "full"]


class InstrumentsConfig(Section):
    preset: Preset = "minimal"
    """Which set of instruments runs: off; minimal (global gradient, parameter and update norms, the final layer's activation RMS, the micro-batch noise scale: what the autopilot reads; under muP also the update/weight ratio per role, docs/mup.md); economy (Cockpit's economy set: Alpha, distance, gradient histogram, gradient tests, per-layer norms, activations, both noise scales); business (+ TIC and Hessian trace); full (+ Hessian max eigenvalue and the 2d gradient/parameter histogram). Default minimal: it shows the norms that go wrong first for a few norms per measurement; the cost of each preset is in docs/instruments.md."""
    every: int = Field(64, ge=1)
    """Measure every this many applied steps (at step 0, every, 2*every, ...; Alpha also uses the step after). 64: the default preset then stays within about 1% of a step even on a tiny model (docs/instruments.md); Cockpit found intervals of 16-64 keep its economy set cheap. Steps that are not due cost one integer check."""
    include: tuple[str, ...] = ()
    """Instruments to run in addition to the preset, by name (e.g. ["mean_gsnr", "cabs"]); see docs/instruments.md for the list."""
    exclude: tuple[str, ...] = ()
    """Instruments of the preset to leave out, by name."""
    per_layer: bool | None = None
    """Also report norms per parameter tensor (keys inst/<name>/<param>). None = the preset decides: global only for minimal (a handful of keys), per layer for the others (as Cockpit)."""
    max_samples: int = Field(64, ge=2)
    """Per-sample quantities use at most this many samples of the batch. Per-sample gradients take max_samples x (number of parameters) floats of memory for a moment; 64 covers the usual small-model batch (Cockpit's benchmarks used 64-128); lower it for large models."""
    alpha_batch: Literal["next", "same"] = "next"
    """Where Alpha observes the far end of the step: 'next' = on the next step's mini-batch at θ_{t+1} (Cockpit's definition, whose readings docs/instruments.md quotes; reported one step later), 'same' = on the same samples right after the update (smoother, reads lower than Cockpit's)."""
    hist_bins: int = Field(100, ge=2)
    """Bins of the 1d gradient histogram (Cockpit's GradHist1d: 100)."""
    hist_range: float = Field(2.0, gt=0.0)
    """The 1d gradient histogram spans (-hist_range, hist_range); elements outside are clamped into the edge bins (Cockpit: (-2, 2))."""
    hist_samples: int = Field(16, ge=0)
    """Samples whose per-sample gradient elements the histograms draw from (0 = all measured samples, as Cockpit). The 1d histogram samples hist_elements of their elements; the 2d histogram bins every element of these samples (a scatter over samples x parameters elements), so 16 resolve the shape of the distribution at a quarter of the cost of 64."""
    hist_elements: int = Field(16384, ge=0)
    """The 1d gradient histogram bins at most this many per-sample gradient elements, drawn uniformly at random from those of the hist_samples samples (0 = bin every element, as Cockpit). 16384: a share of the histogram then has a standard error below sqrt(0.25 / 16384) = 0.004, and binning costs the same on any model."""
    hist2d_bins: tuple[int, int] = (40, 50)
    """Bins of the 2d histogram: (gradient, parameter), as Cockpit's GradHist2d."""
    hist2d_range: tuple[float, float] = (1.0, 2.0)
    """The 2d histogram spans (-r, r) per axis: gradient in (-1, 1), parameter in (-2, 2), as Cockpit."""
    hess_iters: int = Field(100, ge=1)
    """Maximum power iterations (one Hessian-vector product each) for the largest Hessian eigenvalue (Cockpit: 100)."""
    hess_rtol: float = Field(1e-3, gt=0.0)
    """Power iteration stops when the eigenvalue estimate changes by less than this, relatively (Cockpit: 1e-3)."""
    hess_samples: int = Field(8, ge=1)
    """Rademacher vectors per Hutchinson trace estimate, all in one batched Hessian-vector product. The standard error is sqrt(2 Σ_{i≠j} H_ij² / hess_samples): 8 follows the trend of the trace over training; the cost grows linearly with it."""
    noise_ema: float = Field(0.9, ge=0.0, lt=1.0)
    """EMA factor, per measurement, of the noise scale's numerator and denominator (averaged separately before dividing, as gpt-neox). gpt-neox uses 0.99 when measuring every step; measurements here are every-th step, so 0.9 (a window of ~10 measurements)."""
    saturation_eps: float = Field(0.01, gt=0.0, lt=0.5)
    """A sigmoid output below eps or above 1 - eps, or a tanh output with |y| > 1 - eps, counts as saturated: its local gradient is then below ~eps (2*eps for tanh)."""

    @field_validator("include", "exclude")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from trainwell.instruments.presets import INSTRUMENTS
        from trainwell.registry import suggest

        valid = INSTRUMENTS.names()
        unknown = [n for n in names if n not in INSTRUMENTS]
        if unknown:
            # a ValueError, so that pydantic reports it with the other problems of the config
            hints = ", ".join(f"{n!r}{suggest(n, valid)}" for n in unknown)
            raise ValueError(f"unknown instrument {hints}; valid: {', '.join(valid)}")
        return names
