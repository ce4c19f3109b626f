"""The guard family: a registry of builders, chosen by name in ``guards.use``.

A guard reads a StepRecord and returns a Verdict (guards/base.py). The autopilot asks the
non-finite guard first (always on: applying a NaN update would silently destroy the
weights), then every guard of ``guards.use`` in order; the first objection wins. A new
guard is a class with ``name``, ``check``, ``update``, ``state_dict``, ``load_state_dict``
and one ``GUARDS.add`` call; tests/guards/test_guard_contract.py runs every registered one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trainwell.guards.base import Guard
from trainwell.guards.config import GuardsConfig
from trainwell.guards.inputs import InputGuard
from trainwell.guards.nonfinite import NonFiniteGuard
from trainwell.guards.spike import SpikeGuard
from trainwell.registry import Registry


@dataclass(frozen=True)
class GuardContext:
    """What a guard may know of the run besides its config section."""

    input_prior: tuple[float, float] | None = None
    """The training data's log input scale (guards/prior.py), or None (a stream)."""


GuardBuilder = Callable[[GuardsConfig, GuardContext], Guard]
GUARDS: Registry[GuardBuilder] = Registry("guard", "guards.use")

GUARDS.add("nonfinite", lambda cfg, ctx: NonFiniteGuard(cfg.nonfinite if cfg.enabled else "stop"),
           "a NaN/Inf loss or gradient norm is skipped or stops the run (always on)")
GUARDS.add("inputs", lambda cfg, ctx: InputGuard(cfg.spike_window, cfg.spike_sigma, prior=ctx.input_prior),
           "a batch whose largest per-sample input RMS is far outside the data's scale is skipped")
GUARDS.add("spike", lambda cfg, ctx: SpikeGuard(cfg.spike_window, cfg.spike_sigma, cfg.spike_robust,
                                                loss_floor=cfg.spike_loss_floor, grad_floor=cfg.spike_grad_floor),
           "a loss or gradient-norm spike against a rolling window is skipped")


def build_guards(cfg: GuardsConfig, ctx: GuardContext | None = None) -> list[Guard]:
    """The non-finite guard, then ``cfg.use`` in order (none of them when the autopilot is off)."""
    ctx = ctx or GuardContext()
    names = ["nonfinite", *(n for n in cfg.use if n != "nonfinite")] if cfg.enabled else ["nonfinite"]
    return [GUARDS.get(name)(cfg, ctx) for name in names]
