"""Instruments: what loss curves do not show, measured cheaply on a schedule.

One small class per quantity (Cockpit's quantities, the gradient noise scale, activation
health, curvature), run by an :class:`InstrumentRunner` every ``instruments.every`` steps.
See docs/instruments.md for what each quantity means and how to read it.
"""

from __future__ import annotations

from trainwell.instruments.activations import ActivationStats, AttentionLogits, FinalActivation
from trainwell.instruments.alpha import Alpha
from trainwell.instruments.base import (
    Context,
    Histogram,
    Instrument,
    Metrics,
    MicroGrads,
    TwoStepInstrument,
)
from trainwell.instruments.config import InstrumentsConfig
from trainwell.instruments.curvature import TIC, HessMaxEV, HessTrace
from trainwell.instruments.functional import Curvature, FunctionalModel
from trainwell.instruments.gradtests import InnerTest, MeanGSNR, NormTest, OrthoTest
from trainwell.instruments.hist import GradHist1d, GradHist2d
from trainwell.instruments.noise_scale import GradNoiseScale, GradNoiseScalePerSample
from trainwell.instruments.norms import Distance, GradNorm, ParamNorm, UpdateSize
from trainwell.instruments.presets import INSTRUMENTS, PRESETS, build_instruments, instrument_names
from trainwell.instruments.runner import InstrumentRunner
from trainwell.instruments.sgd_only import CABS, EarlyStopping

__all__ = [
    "CABS",
    "INSTRUMENTS",
    "PRESETS",
    "TIC",
    "ActivationStats",
    "Alpha",
    "AttentionLogits",
    "Context",
    "Curvature",
    "Distance",
    "EarlyStopping",
    "FinalActivation",
    "FunctionalModel",
    "GradHist1d",
    "GradHist2d",
    "GradNoiseScale",
    "GradNoiseScalePerSample",
    "GradNorm",
    "Histogram",
    "HessMaxEV",
    "HessTrace",
    "InnerTest",
    "Instrument",
    "InstrumentRunner",
    "InstrumentsConfig",
    "MeanGSNR",
    "Metrics",
    "MicroGrads",
    "NormTest",
    "OrthoTest",
    "ParamNorm",
    "TwoStepInstrument",
    "UpdateSize",
    "build_instruments",
    "instrument_names",
]
