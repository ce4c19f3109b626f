"""Instruments by name, and the presets (Cockpit's economy / business / full, plus minimal).

Each registry entry builds one instrument from the ``[instruments]`` section. A preset is
a tuple of names; ``instruments.include`` adds names and ``instruments.exclude`` removes
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trainwell.instruments.activations import ActivationStats, AttentionLogits, FinalActivation
from trainwell.instruments.alpha import Alpha
from trainwell.instruments.base import Instrument
from trainwell.instruments.config import InstrumentsConfig
from trainwell.instruments.curvature import TIC, HessMaxEV, HessTrace
from trainwell.instruments.gradtests import InnerTest, MeanGSNR, NormTest, OrthoTest
from trainwell.instruments.hist import GradHist1d, GradHist2d
from trainwell.instruments.mup_update import MupUpdateRatio
from trainwell.instruments.noise_scale import GradNoiseScale, GradNoiseScalePerSample
from trainwell.instruments.norms import Distance, GradNorm, ParamNorm, UpdateSize
from trainwell.instruments.outliers import Outliers
from trainwell.instruments.sgd_only import CABS, EarlyStopping
from trainwell.registry import Registry


@dataclass(frozen=True)
class BuildArgs:
    cfg: InstrumentsConfig
    per_layer: bool
    explicit: bool
    """The user named this instrument in instruments.include (not just the preset)."""


Builder = Callable[[BuildArgs], Instrument]

INSTRUMENTS: Registry[Builder] = Registry("instrument", "instruments.include")

_add = INSTRUMENTS.add
_add("grad_norm", lambda a: GradNorm(a.per_layer), "norm of the update's gradient")
_add("param_norm", lambda a: ParamNorm(a.per_layer), "norm of the parameters")
_add(
    "update_size",
    lambda a: UpdateSize(a.per_layer),
    "norm of the update and update/parameter ratio",
)
_add("distance", lambda a: Distance(a.per_layer), "distance from the initialisation")
_add(
    "alpha", lambda a: Alpha(a.cfg.alpha_batch), "where along the valley the step landed (Cockpit)"
)
_add("norm_test", lambda a: NormTest(), "gradient norm test (Byrd et al. 2012)")
_add("inner_test", lambda a: InnerTest(), "inner-product test (Bollapragada et al. 2018)")
_add("ortho_test", lambda a: OrthoTest(), "orthogonality test (Bollapragada et al. 2018)")
_add("mean_gsnr", lambda a: MeanGSNR(), "mean gradient signal-to-noise ratio (Liu et al. 2020)")
_add("cabs", lambda a: CABS(), "CABS batch size, SGD only (Balles et al. 2017)")
_add(
    "early_stopping",
    lambda a: EarlyStopping(),
    "evidence-based stopping, SGD only (Mahsereci et al. 2017)",
)
_add(
    "grad_hist1d",
    lambda a: GradHist1d(a.cfg.hist_bins, a.cfg.hist_range, a.cfg.hist_samples, a.cfg.hist_elements),
    "histogram of per-sample gradient elements",
)
_add(
    "grad_hist2d",
    lambda a: GradHist2d(a.cfg.hist2d_bins, a.cfg.hist2d_range, a.cfg.hist_samples),
    "joint histogram of gradient and parameter values",
)
_add(
    "hess_trace", lambda a: HessTrace(a.cfg.hess_samples, a.per_layer), "Hessian trace (Hutchinson)"
)
_add(
    "hess_max_ev",
    lambda a: HessMaxEV(a.cfg.hess_iters, a.cfg.hess_rtol),
    "largest Hessian eigenvalue (power iteration)",
)
_add("tic", lambda a: TIC(a.cfg.hess_samples), "Takeuchi information criterion, trace variant")
_add(
    "noise_scale",
    lambda a: GradNoiseScale(a.cfg.noise_ema, quiet=not a.explicit),
    "gradient noise scale B_simple from accumulation micro-batches (free)",
)
_add(
    "noise_scale_ps",
    lambda a: GradNoiseScalePerSample(a.cfg.noise_ema),
    "gradient noise scale from per-sample gradients",
)
_add(
    "activations",
    lambda a: ActivationStats(a.cfg.saturation_eps),
    "activation mean/std, dead ReLUs, saturation",
)
_add("final_act", lambda a: FinalActivation(), "RMS of the final layer's input")
_add("attention", lambda a: AttentionLogits(), "largest attention logit")
_add("outliers", lambda a: Outliers(), "outliers of each linear layer's input and weight (max/std, kurtosis)")
_add("mup_update", lambda a: MupUpdateRatio(), "muP: update/weight ratio per role (spectral norm); nothing under SP")

_MINIMAL = ("grad_norm", "param_norm", "update_size", "final_act", "noise_scale", "mup_update")
_ECONOMY = (
    # Cockpit's economy (Loss and Time are the loop's train/loss and sys/step_time_s) ...
    "alpha", "distance", "grad_hist1d", "grad_norm", "inner_test", "norm_test", "ortho_test", "update_size",
    # ... plus what is (nearly) free once per-sample gradients and one forward are paid for
    "param_norm", "activations", "final_act", "attention", "noise_scale", "noise_scale_ps",
    "mup_update",  # under muP only: the live coordinate check
    "outliers",  # one forward of the measured samples: what quantisation will meet
)  # fmt: skip
_BUSINESS = (*_ECONOMY, "tic", "hess_trace")
_FULL = (*_BUSINESS, "hess_max_ev", "grad_hist2d")

PRESETS: dict[str, tuple[str, ...]] = {
    "off": (),
    "minimal": _MINIMAL,
    "economy": _ECONOMY,
    "business": _BUSINESS,
    "full": _FULL,
}


def instrument_names(cfg: InstrumentsConfig) -> list[str]:
    """The preset's names, plus ``include``, minus ``exclude``, without duplicates."""
    names = [*PRESETS[cfg.preset], *cfg.include]
    return [n for i, n in enumerate(names) if n not in names[:i] and n not in cfg.exclude]


def build_instruments(cfg: InstrumentsConfig) -> list[Instrument]:
    per_layer = cfg.per_layer if cfg.per_layer is not None else cfg.preset != "minimal"
    return [
        INSTRUMENTS.get(n)(BuildArgs(cfg, per_layer, explicit=n in cfg.include))
        for n in instrument_names(cfg)
    ]
