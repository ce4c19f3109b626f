"""StepCapture: what an update's own forward and backward give the instruments, armed
per step by the runner.

- A step that measures per-sample quantities: every layer's input and output gradient
  (capture.BackwardCapture), turned into per-sample gradients, checked once against the
  optimizer's gradient.
- A step that only finishes a two-step instrument along one direction (Alpha's far end):
  just the per-sample slopes along it (slopes.SlopeCapture), once the full capture has
  been trusted on this model.
- Activations and the final layer's input: hooks on the due step's first micro-batch
  (``StepActivations``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.instruments.activations import Activations, Layout, Recorder, record
from trainwell.instruments.base import ACTIVATIONS, ATTENTION, FINAL_INPUT
from trainwell.instruments.capture import NO_PER_SAMPLE, BackwardCapture, Captured, micro_scale
from trainwell.instruments.functional import FunctionalModel
from trainwell.instruments.slopes import SlopeCapture


class StepCapture:
    """``begin`` before the update's first forward, ``after_micro`` after each micro-batch's
    backward, ``take`` before the optimizer step. ``warn`` receives one-line notes."""

    def __init__(self, model: nn.Module, param_names: list[str], enabled: bool, warn: Callable[[str], None]) -> None:
        cap = BackwardCapture(model, param_names) if enabled else None
        self.full: BackwardCapture | None = cap if cap is not None and cap.why_not is None else None
        """The full capture, or None where the model does not allow it (or it was not trusted)."""
        self.slopes = SlopeCapture(cap.layers if cap is not None else [])
        self._warn = warn

    def begin(self, full: bool, follow: bool, direction: Callable[[], dict[str, Tensor] | None]) -> None:
        """Arm the full capture for a step that measures (``full``) or finishes a two-step
        instrument (``follow``), or only the slopes along ``direction()`` for the latter when
        every waiting instrument offers the same one; disarm otherwise."""
        cap = self.full
        if cap is None:
            return
        along = direction() if follow and not full and cap.trusted else None
        if along is not None:  # no factors kept: the slopes are summed during the backward
            cap.disarm()
            self.slopes.arm(along)
            return
        self.slopes.disarm()
        if full or follow:
            cap.arm()
        elif cap.armed:
            cap.disarm()

    def after_micro(self, n: int, count: Tensor | float, grad_factor: Tensor | float, per_sample: Tensor | None) -> None:
        cap = self.full
        if cap is not None and cap.armed:
            cap.close_micro(n, count, grad_factor, per_sample)
        elif self.slopes.armed:
            if per_sample is None:
                self.slopes.failure = NO_PER_SAMPLE
            else:
                scale, losses = micro_scale(n, count, grad_factor, per_sample)
                self.slopes.close_micro(n, scale, losses)

    def take(self, live: Callable[[], dict[str, Tensor | None]]) -> tuple[Captured | None, tuple[Tensor, Tensor] | None]:
        """(per-sample gradients, (losses, slopes)) of this update, each None when not
        armed or not available. The first full capture must agree with the optimizer's
        gradient ``live()``, else the capture is off for the run (the torch.func path
        measures instead)."""
        slopes = None
        if self.slopes.armed:
            slopes = self.slopes.take()
            if slopes is None:
                self._warn(f"per-sample slopes for Alpha's far end: {self.slopes.failure}; "
                           "measuring them by a line search instead")
        cap = self.full
        if cap is None or not cap.armed:
            return None, slopes
        captured, problem = cap.take_trusted(live())
        if problem is not None:
            self.full = None
            self._warn(problem)
        return captured, slopes


class StepActivations:
    """Where a due step's activations come from: hooks attached to the training forward's
    first micro-batch (``begin`` ... ``after_micro``: free), else one forward of its own at
    θ_t (a loop that does not offer its forward). Attention logits always need a forward of
    their own (through scaled_dot_product_attention), until one showed that the model makes
    no such call."""

    def __init__(self, model: nn.Module, fn: FunctionalModel) -> None:
        self.model, self.fn = model, fn
        self._layout: Layout | None = None
        self._recorder: Recorder | None = None
        self._seen: tuple[int, Activations] | None = None
        self.attention: bool | None = None
        """Whether the model calls scaled_dot_product_attention (None: not yet known)."""

    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = Layout(self.model)
        return self._layout

    def begin(self, step: int, wanted: frozenset[str]) -> None:
        """Before the step's first forward: hooks for ``wanted`` (ACTIVATIONS, FINAL_INPUT)."""
        if self._recorder is not None:  # left attached by a step that never finished
            self._recorder.detach()
        self._recorder, self._seen = None, None
        if wanted:
            self._recorder = Recorder(
                self.layout(), outputs=ACTIVATIONS in wanted, final=FINAL_INPUT in wanted
            ).attach()

    def after_micro(self, step: int) -> None:
        if self._recorder is not None:
            self._seen = (step, self._recorder.detach())
            self._recorder = None

    def collect(self, step: int, batch: Any, wanted: frozenset[str], devices: list[torch.device]) -> Activations:
        """The activations of ``step`` for ``wanted`` (ACTIVATIONS, FINAL_INPUT, ATTENTION)."""
        seen, self._seen = self._seen, None
        acts = seen[1] if seen is not None and seen[0] == step else None
        todo = wanted & {ATTENTION} if acts is not None else wanted
        if todo == {ATTENTION} and self.attention is False:
            todo = frozenset()  # a model without attention calls: nothing to run
        if not todo:
            return acts if acts is not None else Activations()
        with torch.random.fork_rng(devices=devices):
            fresh = record(self.fn, None, batch, self.layout(), outputs=ACTIVATIONS in todo,
                           final=FINAL_INPUT in todo, attention=ATTENTION in todo and self.attention is not False)
        if ATTENTION in todo and self.attention is None:
            self.attention = bool(fresh.attention or fresh.attention_like)
        if acts is None:
            return fresh
        acts.attention, acts.attention_like = fresh.attention, fresh.attention_like
        return acts
