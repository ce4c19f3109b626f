"""The ``[guards]`` section: the stability autopilot, on by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainwell.section import Section


class GuardsConfig(Section):
    enabled: bool = True
    """The stability autopilot (skip, quarantine, rollback, logbook). On by default: it is silent on a healthy run and its fixed cost is a few norms and Python checks a step (docs/autopilot.md, Cost). Off: every guard is off except that a NaN/Inf update still stops the run (applying it would silently destroy the weights), and the step measures neither inputs nor the final-layer activation."""
    use: list[str] = Field(default_factory=lambda: ["inputs", "spike"])
    """The guards that judge every update, in order (the first objection wins), by name from the guard registry (guards/family.py): 'inputs' (mis-scaled batches) before 'spike' (loss and gradient spikes), so that a bad batch is named for its cause. The non-finite guard always runs first and is not listed."""
    nonfinite: Literal["skip", "stop"] = "skip"
    """A NaN/Inf loss or grad norm: 'skip' the update and count it (repeated skips lead to a rollback), or 'stop' with a diagnosis. Maintainers disagree (torchtitan #916 vs OLMo-core), so it is your choice; 'skip' keeps long runs alive."""
    spike_window: int = Field(128, ge=8)
    """Applied steps in the rolling window of the spike test. 128 as OLMo-core's SkipStep optimizer; the z-score is silent for the first half window, where from the 8th step only a loss more than 2 x spike_sigma robust spreads above the median of the losses so far is a spike (a bad sample of a small dataset would otherwise enter the window unjudged and hide its later returns)."""
    spike_sigma: float = Field(6.0, gt=0.0)
    """An update whose loss or grad norm is more than this many standard deviations above the window's mean is skipped. 6 as OLMo-core: a clean run essentially never reaches it."""
    spike_loss_floor: float = Field(0.02, ge=0.0)
    """The spike test's loss spread is never taken below this fraction of the loss at initialisation: a model trained close to zero loss has a window so quiet that one hard batch looks like a 10-sigma spike (a digits MLP at 4x its default length did this). 0.02 x ln 10 x 6 sigma: a jump under 0.28 in a ten-class loss is never a spike; an LR x100 burst still measured 126 sigma."""
    spike_grad_floor: float = Field(3.0, ge=1.0)
    """A gradient norm under this multiple of the window's geometric mean is never a spike, however steady the window (the test reads the norm on a log scale, where a steady norm has a small spread). A small GPT on bytes-lm (batch 8 x 64 tokens, 400 steps, clean) had its norm at 2.1x and 1.9x the window's at 6.1 and 6.0 sigma; real blow-ups jump by 10-1000x (an LR x100 burst, inputs x1e4). 1 = the plain 6-sigma test."""
    spike_robust: bool = False
    """Use the window's median and MAD x 1.4826 instead of mean and std: robust to earlier spikes in the window, O(window) per step instead of O(1)."""
    quarantine: bool = True
    """After a skipped update, find the samples of the batch that caused it (non-finite, or extreme per-sample loss) and keep them out of training (OPT's logbook traced a spike to a sequence of a million '/' characters)."""
    quarantine_z: float = Field(8.0, gt=0.0)
    """Robust z-score (median/MAD within the batch) above which a sample's loss is extreme (it must also be extreme on a log scale, so that the heavy tail of a fitted model's losses is not). 8 found >= 93% of x1e4-scaled or garbage samples in synthetic batches, with a false alarm in at most 1 clean batch in 200; lower finds more and risks quarantining hard but valid samples."""
    rollback: bool = True
    """Roll back to the last healthy checkpoint with a lower LR and clipping when skipping does not help, as OPT-175B did by hand."""
    max_skips: int = Field(5, ge=1)
    """Rollback trigger: this many skipped updates within skip_window steps. One or two skips are bad data, handled by skip + quarantine; five in a hundred mean the model itself is unstable."""
    skip_window: int = Field(100, ge=1)
    """Attempted steps over which max_skips are counted."""
    divergence_factor: float = Field(1.5, gt=1.0)
    """Rollback trigger: the smoothed loss (EMA over ~50 steps) stays above this multiple of its best value. 1.5 is far above the EMA's noise and well below where a divergence ends (the loss of a random guess). A run whose loss may rise that much on purpose (a curriculum, a change of data mix) should raise it or set divergence_steps = 0."""
    divergence_floor: float = Field(0.05, ge=0.0)
    """The divergence trigger also needs the smoothed loss at least this fraction of the loss at initialisation above its best: near zero loss, 1.5 x the best is noise (a digits MLP at 4x its default length went from 0.005 to 0.029 on a few hard batches and was rolled back for nothing). 0.05 x ln 10 = 0.12 for ten classes; a language model at 1.3 nats keeps the 1.5x rule (0.65 > 0.05 x ln 256)."""
    divergence_steps: int = Field(20, ge=0)
    """Rollback trigger (with divergence_factor): the smoothed loss must stay that high for this many applied steps in a row (0 = no divergence trigger). 20 steps of an EMA over 50 is a sustained rise, not a bump."""
    min_loss_scale: float = Field(1.0, ge=0.0)
    """Rollback trigger with fp16: the dynamic loss scale falls below this. OPT saw its scaler 'crashing to 0' with divergences and restarted where it was still >= 1.0. 0 = off."""
    lr_factor: float = Field(0.5, gt=0.0, le=1.0)
    """Each rollback multiplies the learning rate by this (OPT lowered the LR at restarts; halving is the usual first step)."""
    clip_factor: float = Field(0.3, gt=0.0, le=1.0)
    """The first rollback multiplies the gradient clipping threshold by this, once (OPT lowered clipping from 1.0 to 0.3 for stability)."""
    max_rollbacks: int = Field(3, ge=0)
    """Rollbacks without recovery before the run stops with a diagnosis instead of looping (recovery = the smoothed loss back at its pre-rollback best, or recovery_steps clean steps)."""
    recovery_steps: int = Field(500, ge=1)
    """Applied steps in a row without any intervention that count as a recovery after a rollback, when the loss has not yet come back to its best."""
    data_skip: int = Field(0, ge=0)
    """After a rollback, the data resumes this many batches past the iteration where the rollback was triggered, so the restarted run does not replay the data that led into the divergence (PaLM skipped 200-500 batches). 0 = right after it."""
    health_window: int = Field(100, ge=4)
    """Steps a checkpoint looks back to be 'healthy' (a rollback target): no intervention in them, smoothed loss not rising over them, fp16 loss scale >= 1, final-layer activation norm not steadily growing."""

    @model_validator(mode="after")
    def _check(self) -> GuardsConfig:
        from trainwell.guards.family import GUARDS  # the registry imports this section

        unknown = [GUARDS.unknown(n) for n in self.use if n not in GUARDS]
        if unknown:
            raise ValueError("; ".join(unknown))
        if self.max_skips > self.skip_window:
            # a ValueError, so that pydantic reports it with the other problems of the config
            raise ValueError(
                f"guards.max_skips ({self.max_skips}) must be <= guards.skip_window "
                f"({self.skip_window}): more skips than steps in the window can never happen"
            )
        return self
