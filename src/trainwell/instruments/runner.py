"""InstrumentRunner: the one object the training loop talks to.

Call sites in the loop; on steps that are not due each is one integer check:

    runner.begin(step, micro=k)                                   # arms the backward capture
    for micro-batch i:  ... loss.backward()
        runner.after_micro_backward(step, count_i, grad_factor, n_i, per_sample_i)
    record = ...; verdict = guards(record)                        # APPLY:
    runner.before_update(step, batch, record.loss, record.lr)     # .grad = this update's gradient
    optimizer.step()
    metrics = runner.after_update(step)                           # {} unless due

``step`` is the number of applied updates before this one (the StepRecord's ``step``).
Call ``before_update``/``after_update`` on every applied update, or at least whenever
``runner.due(step)``: a step is due every ``every`` steps, and the step after one when a
two-step instrument (Alpha on the next mini-batch) finishes there. A skipped update simply
gets no ``after_update``.

On a due step ``begin`` hooks the training forward and backward (stepcapture.py: per-sample
gradients, or on Alpha's follow-up step only the slopes along its direction; activations);
``before_update`` copies θ_t (and the gradient when asked);
``after_update`` builds one Context with what the due instruments need, evaluating at θ_t
or θ_{t+1} through torch.func on copies (never the live model, its .grad, its buffers or
the optimizer), inside a forked RNG, and reads all results back in one host sync.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.instruments.activations import Activations
from trainwell.instruments.base import (
    ACTIVATIONS,
    ATTENTION,
    FINAL_INPUT,
    GRADS,
    HVP,
    INIT,
    MICRO,
    NEEDS,
    PER_SAMPLE,
    PER_SAMPLE_FREE,
    Context,
    Histogram,
    Instrument,
    Metrics,
    MicroGrads,
    read_back,
    rng_devices,
)
from trainwell.instruments.capture import BackwardCapture, Captured
from trainwell.instruments.config import InstrumentsConfig
from trainwell.instruments.functional import FunctionalModel, take
from trainwell.instruments.noise_scale import MicroTracker
from trainwell.instruments.persample import PerSampleGrads
from trainwell.instruments.presets import build_instruments
from trainwell.instruments.stepcapture import StepActivations, StepCapture
from trainwell.tasks.base import Task

HIST_KEEP = 512  # histograms kept per key for the report: an 8k-step run at every = 16


@dataclass
class _Pending:
    step: int
    scheduled: bool  # a measuring step (else only a two-step instrument's follow-up)
    batch: Any
    loss: float
    lr: float
    params_before: dict[str, Tensor]
    grads: dict[str, Tensor] | None
    micro: MicroGrads | None
    captured: Captured | None = None
    """Per-sample gradients and losses of the training backward (capture.py)."""
    slopes: tuple[Tensor, Tensor] | None = None
    """(losses, g_iᵀd) along a follow-up's direction, from the training step (slopes.py)."""
    activations: Activations | None = None
    failures: list[tuple[str, Exception]] = field(default_factory=list)  # (need, error) not recorded


class InstrumentRunner:
    """Runs the configured instruments every ``cfg.every`` applied steps.

    ``model`` must be the plain module (not the torch.compile wrapper); ``task`` provides
    the loss. ``instruments`` overrides the config's preset (tests, custom instruments).
    ``strict`` re-raises an instrument's failure instead of disabling it with a warning
    (a diagnostic must not end a long run; tests want the traceback). ``capture`` False
    keeps per-sample gradients on the torch.func path (tests compare the two).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        cfg: InstrumentsConfig | None = None,
        *,
        instruments: list[Instrument] | None = None,
        strict: bool = False,
        capture: bool = True,
    ) -> None:
        self.cfg = cfg if cfg is not None else InstrumentsConfig()
        self.model = model
        self.instruments = (
            list(instruments) if instruments is not None else build_instruments(self.cfg)
        )
        for inst in self.instruments:
            unknown = set(inst.needs) - NEEDS
            if unknown:
                raise ValueError(
                    f"instrument {inst.name!r} needs {sorted(unknown)}; known needs: {sorted(NEEDS)}"
                )
        self.every = self.cfg.every
        self.strict = strict
        self.fn = FunctionalModel(model, task)
        named = dict(model.named_parameters())
        self._param_list = [named[n] for n in self.fn.param_names]
        self._views = [p.detach() for p in self._param_list]
        """Detached views of the live parameters (they share storage, so they stay current:
        the optimizer, a resume and a rollback all write into the parameters in place)."""
        self._bufs: dict[str, list[Tensor]] = {}
        self._single = False
        """This update has a single micro-batch (begin's ``micro``)."""
        self._needs: tuple[int, frozenset[str]] | None = None
        self.warnings: list[str] = []
        """One line per distinct problem or note, in the order first seen (shown once)."""
        self._disabled: set[str] = set()
        self._hist: dict[str, deque[Histogram]] = {}
        self._pending: _Pending | None = None
        self._micro: MicroTracker | None = None
        self._following: list[Instrument] = []
        """Two-step instruments waiting for the next step (e.g. Alpha's far end)..."""
        self._follow_step = -1
        """... which is this one."""
        self._init = self._copy_params() if INIT in self.needs else None
        self._acts = StepActivations(model, self.fn)
        # BatchNorm couples the samples of a batch: its training backward has no per-sample split
        self._steps = StepCapture(model, self.fn.param_names, capture and not self.fn.batchnorms, self._warn)

    @property
    def _capture(self) -> BackwardCapture | None:  # the full capture (None: off, or not trusted)
        return self._steps.full

    # ------------------------------------------------------------ schedule

    @property
    def needs(self) -> frozenset[str]:
        """What the active instruments need (cached until one is disabled)."""
        if self._needs is None or self._needs[0] != len(self._disabled):
            self._needs = (len(self._disabled), frozenset().union(*(i.needs for i in self._active())))
        return self._needs[1]

    def due(self, step: int) -> bool:
        """Whether the runner wants ``before_update``/``after_update`` for the update after
        ``step`` applied steps: every ``every``-th step, and the step after a measurement
        that a two-step instrument (Alpha) finishes on the next batch."""
        return self._scheduled(step) or (bool(self._following) and step == self._follow_step)

    def _scheduled(self, step: int) -> bool:
        return step % self.every == 0 and bool(self.instruments)

    # ------------------------------------------------------------ loop call sites

    def begin(self, step: int, *, compiled: bool = False, micro: int | None = None) -> None:
        """Before the update's first forward: on a step that measures per-sample
        quantities (or finishes Alpha), arm the hooks that keep the training backward's
        per-sample factors. Not under torch.compile (hooks would force recompilation).
        ``micro``: the update's number of micro-batches, where the loop knows it (with
        one, the micro-batch noise scale has nothing to compare: no gradient copy)."""
        self._single = micro == 1
        if self._scheduled(step) and not compiled:
            self._acts.begin(step, self.needs & {ACTIVATIONS, FINAL_INPUT})
        self._steps.begin(
            full=not compiled and self._scheduled(step) and bool(self.needs & {PER_SAMPLE, PER_SAMPLE_FREE}),
            follow=not compiled and bool(self._following) and step == self._follow_step,
            direction=self._slope_direction,
        )

    def after_micro_backward(
        self,
        step: int,
        count: Tensor | float,
        grad_factor: Tensor | float = 1.0,
        n: int | None = None,
        per_sample: Tensor | None = None,
    ) -> None:
        """After micro-batch i's backward: ``.grad`` holds grad_factor × Σ_{j≤i} ∇(LossOutput.sum
        of micro-batch j), ``count`` is micro-batch i's LossOutput.count, ``n`` its number
        of samples and ``per_sample`` its LossOutput.per_sample. step.py passes
        grad_factor = loss_scale / norm_ref. Tensors are fine (no host sync)."""
        self._acts.after_micro(step)  # the first micro-batch is enough
        self._steps.after_micro(n if n is not None else 0, count, grad_factor, per_sample)
        if not self._scheduled(step) or MICRO not in self.needs or self._single:
            return
        if self._micro is None or self._micro.step != step:
            self._micro = MicroTracker(step)
        self._micro.add(self._params(), count, grad_factor)

    def before_update(self, step: int, batch: Any, loss: float, lr: float) -> None:
        """After backward (``.grad`` is the update's mean gradient), before the optimizer step."""
        self._pending = None
        if self._following and step != self._follow_step:
            self._following = []  # the loop moved on without that step: the follow-up expired
        scheduled = self._scheduled(step) and bool(self._active())
        if not scheduled and not self._following:
            return
        grads = None
        if scheduled and GRADS in self.needs:
            grads = self._keep("grads", [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params()])
        micro = self._take_micro(step) if scheduled else None
        captured, slopes = self._steps.take(
            lambda: {n: p.grad for n, p in zip(self.fn.param_names, self._params(), strict=True)}
        )
        pending = _Pending(
            step, scheduled, batch, float(loss), float(lr), self._keep("before", self._views), grads, micro,
            captured, slopes,
        )
        if scheduled:
            self._record(pending)
        self._pending = pending

    def after_update(self, step: int) -> dict[str, float]:
        """After the optimizer step: measure the due instruments; {} on other steps."""
        pending, self._pending = self._pending, None
        if pending is None or pending.step != step:
            return {}
        metrics: Metrics = {}
        # the training RNG stream must not see the instruments (dropout in their forwards);
        # no autograd graph for their arithmetic (what differentiates enables grad itself)
        with torch.random.fork_rng(devices=rng_devices(pending.params_before)), torch.no_grad():
            ctx = self._context(pending, metrics)
            following, self._following = self._following, []
            for inst in following:  # finish last step's two-step measurements first
                self._run(inst, inst.follow_up, ctx, metrics)  # type: ignore[attr-defined]
            if pending.scheduled:
                for inst in self._active():
                    self._run(inst, inst.measure, ctx, metrics)
            self._following = [i for i in self._active() if getattr(i, "pending", False)]
            self._follow_step = step + 1
        for name, h in ctx.histograms.items():
            self._hist.setdefault(name, deque(maxlen=HIST_KEEP)).append(h)
        for note in ctx.notes:
            self._warn(note)
        return read_back(metrics)

    def close(self) -> None:
        """Drop every copy the runner holds."""
        self._pending = self._micro = None
        self._following = []

    # ------------------------------------------------------------ outputs and state

    def histograms(self) -> dict[str, list[Histogram]]:
        """name -> the kept histograms, oldest first (``grad_hist1d``, ``grad_hist1d/<param>``, ``grad_hist2d``)."""
        return {k: list(v) for k, v in self._hist.items()}

    def state_dict(self) -> dict[str, Any]:
        """θ_0 (for the distance from init after a resume) and each instrument's own state."""
        states = {i.name: i.state_dict() for i in self.instruments if hasattr(i, "state_dict")}
        return {"init": self._init, "instruments": states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("init") is not None:
            named = dict(zip(self.fn.param_names, self._params(), strict=True))
            self._init = {n: t.to(named[n].device) for n, t in state["init"].items()}
        for inst in self.instruments:
            saved = state.get("instruments", {}).get(inst.name)
            if saved is not None and hasattr(inst, "load_state_dict"):
                inst.load_state_dict(saved)

    # ------------------------------------------------------------ internals

    def _norms(self) -> frozenset[str]:
        """What the active instruments read of base.norm_bank (computed together)."""
        return frozenset(k for i in self._active() for k in getattr(i, "norms", ()))

    def _active(self) -> list[Instrument]:
        return [i for i in self.instruments if i.name not in self._disabled]

    def _params(self) -> list[nn.Parameter]:
        # the Parameter objects are stable: load_state_dict (resume, rollback) copies into them
        return self._param_list

    def _copy_params(self) -> dict[str, Tensor]:
        with torch.no_grad():  # one fused copy (θ_0: kept for the run)
            return dict(zip(self.fn.param_names, torch._foreach_mul(self._views, 1.0), strict=True))

    def _keep(self, slot: str, tensors: list[Tensor]) -> dict[str, Tensor]:
        """Copies of ``tensors`` (one per parameter) in buffers the runner keeps: one fused
        copy and no allocation after the first measurement (a quarter of the cost of
        fresh copies on a CPU). They hold until the next measurement overwrites them,
        which outlives the Context they serve: instruments keep no reference to the
        Context's tensors past their call (what they keep, they compute)."""
        bufs = self._bufs.get(slot)
        if bufs is None:
            bufs = self._bufs[slot] = [torch.empty_like(t) for t in tensors]
        with torch.no_grad():
            torch._foreach_copy_(bufs, tensors)
        return dict(zip(self.fn.param_names, bufs, strict=True))

    def _take_micro(self, step: int) -> MicroGrads | None:
        st, self._micro = self._micro, None
        return st.take() if st is not None and st.step == step else None

    def _slope_direction(self) -> dict[str, Tensor] | None:
        """The one direction along which every waiting two-step instrument wants this
        step's per-sample slopes (slopes.py), or None (then the full capture runs)."""
        dirs = [getattr(i, "slope_direction", None) for i in self._following]
        return dirs[0] if dirs and all(d is not None and d is dirs[0] for d in dirs) else None

    def _run(self, inst: Instrument, method: Any, ctx: Context, metrics: Metrics) -> None:
        try:
            metrics.update(method(ctx))
        except Exception as e:  # a diagnostic must not end the run
            self._fail(inst.name, e, metrics)

    def _context(self, p: _Pending, metrics: Metrics) -> Context:
        # a follow-up step needs only θ (params_before), the batch and the functional model
        needs = self.needs if p.scheduled else frozenset()
        names = self.fn.param_names
        ctx = Context(
            step=p.step, model=self.model, task=self.fn.task, batch=p.batch,
            samples=take(p.batch, self.cfg.max_samples), params=dict(zip(names, self._params(), strict=True)),
            loss=p.loss, lr=p.lr, fn=self.fn, grads=p.grads, params_before=p.params_before,
            params_after=dict(zip(names, self._views, strict=True)), params_init=self._init, micro_grads=p.micro,
            activations=p.activations, slopes=p.slopes, norms=self._norms() if p.scheduled else frozenset(),
        )
        if p.captured is not None:  # from the training backward: θ_t, this update's batch
            k = self.cfg.max_samples
            ctx.per_sample = p.captured.grads.take(k)
            ctx.per_sample_losses = p.captured.losses[:k]
        elif PER_SAMPLE in needs:
            try:
                grads, ctx.per_sample_losses = self.fn.per_sample_grads(p.params_before, ctx.samples)
                ctx.per_sample = PerSampleGrads.from_dense(grads)
            except Exception as e:
                self._unavailable(PER_SAMPLE, "per-sample gradients (torch.func vmap over grad)", e, metrics)
            else:
                self._report_batchnorm(metrics)
        if HVP in needs:
            try:
                ctx.curvature = self.fn.curvature(p.params_before, p.batch)
            except Exception as e:
                self._unavailable(HVP, "Hessian-vector products (double backward)", e, metrics)
        for need, error in p.failures:
            self._unavailable(need, "the recorded forward (activation hooks)", error, metrics)
        return ctx

    def _record(self, p: _Pending) -> None:
        """The activations at θ_t (stepcapture.py's StepActivations: the training forward's
        hooks, or a forward of its own)."""
        recorded = self.needs & {ACTIVATIONS, FINAL_INPUT, ATTENTION}
        if not recorded:
            return
        try:
            p.activations = self._acts.collect(p.step, p.batch, recorded, rng_devices(p.params_before))
        except Exception as e:
            if self.strict:
                raise
            p.failures.extend((need, e) for need in sorted(recorded))

    def _report_batchnorm(self, metrics: Metrics) -> None:
        if not self.fn.batchnorms:
            return
        for name in self.fn.batchnorms:
            metrics[f"inst/unsupported/{name}"] = 1.0
        self._warn(
            f"per-sample quantities: BatchNorm ({', '.join(self.fn.batchnorms)}) mixes the samples of a batch, "
            "so per-sample gradients are ill-defined; they are computed with these layers on their running "
            "statistics (eval mode) and flagged as inst/unsupported/<module>: read the gradient tests, "
            "histograms and per-sample noise scale of this model with care"
        )

    def _unavailable(self, need: str, what: str, error: Exception, metrics: Metrics) -> None:
        if self.strict:
            raise error
        users = [i.name for i in self._active() if need in i.needs]
        self._disabled.update(users)
        metrics[f"inst/unsupported/{need}"] = 1.0
        self._warn(
            f"{what} failed on this model ({type(error).__name__}: {error}); disabled: {', '.join(users)}"
        )

    def _fail(self, name: str, error: Exception, metrics: Metrics) -> None:
        if self.strict:
            raise error
        self._disabled.add(name)
        metrics[f"inst/failed/{name}"] = 1.0
        self._warn(
            f"instrument {name} failed ({type(error).__name__}: {error}); disabled for the rest of the run"
        )

    def _warn(self, line: str) -> None:
        if line not in self.warnings:
            self.warnings.append(line)
