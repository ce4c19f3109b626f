"""The instrument contract: what an instrument needs, what it is handed, what it returns.

An instrument is one small class per quantity (Cockpit's design): it declares ``needs``,
the runner builds a :class:`Context` holding only what the due instruments need, and
``measure(ctx)`` returns named numbers. Instruments are read-only: they never change the
model, its gradients, its buffers, the optimizer or the global random number generators
(ARCHITECTURE.md, rule 1); the runner checks the RNG part by forking it around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from trainwell.instruments.activations import Activations
    from trainwell.instruments.functional import Curvature, FunctionalModel
    from trainwell.instruments.persample import PerSampleGrads
    from trainwell.tasks.base import Task

# --- what an instrument may need (the runner computes each only when a due instrument asks)
GRADS = "grads"
"""ctx.grads: the mean gradient of this update, as the optimizer received it."""
PER_SAMPLE = "per_sample_grads"
"""ctx.per_sample / ctx.per_sample_losses at θ_t: from the training backward where the
model allows it (capture.py), else by torch.func (vmap over grad)."""
UPDATE = "update"
"""ctx.params_before (θ_t) and ctx.params_after (θ_{t+1})."""
INIT = "init"
"""ctx.params_init (θ_0, copied when the runner was built)."""
HVP = "hvp"
"""ctx.curvature: Hessian-vector products of the batch loss at θ_t."""
ACTIVATIONS = "activations"
"""ctx.activations.outputs: outputs of the activation modules (ReLU, GELU, tanh, ...)."""
FINAL_INPUT = "final_input"
"""ctx.activations.final_input: the input of the model's final layer."""
ATTENTION = "attention"
"""ctx.activations.attention: the largest attention logit of each attention module."""
MICRO = "micro_grads"
"""ctx.micro_grads: squared norms of each micro-batch's gradient (accumulation)."""

PER_SAMPLE_FREE = "per_sample_if_free"
"""ctx.per_sample / ctx.per_sample_losses only where the training backward yields them at
no extra pass (capture.py); None otherwise (no torch.func fallback is run for it)."""

NEEDS = frozenset(
    {GRADS, PER_SAMPLE, PER_SAMPLE_FREE, UPDATE, INIT, HVP, ACTIVATIONS, FINAL_INPUT, ATTENTION, MICRO}
)

class Vector:
    """Several metrics held in one 1-d tensor (a value per layer, say): ``keys[i]`` is
    ``values[i]``. An instrument returns it under a key of its own (by convention
    ``inst/<name>/*``); the runner reads it back with the other values and reports one key
    per element. One tensor instead of one 0-d tensor per layer saves a kernel per value
    on the way to the host."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: list[str], values: Tensor) -> None:
        if len(keys) != values.numel():
            raise ValueError(f"{len(keys)} keys for {values.numel()} values")
        self.keys, self.values = keys, values


Metrics = dict[str, "float | Tensor | Vector"]
"""What ``measure`` returns: keys ``inst/<name>`` or ``inst/<name>/<layer>``; values are
floats, 0-d tensors or a :class:`Vector` of several (the runner reads all tensors back in
one host sync)."""


@dataclass
class Histogram:
    """Counts of one histogram at one step, on the CPU (for the run report)."""

    step: int
    counts: Tensor
    """(bins,) for 1d; (x_bins, y_bins) for 2d."""
    edges: tuple[Tensor, ...]
    """Bin edges per axis, each (bins + 1,)."""
    axes: tuple[str, ...] = ("gradient",)
    """What each axis bins, e.g. ("gradient", "parameter")."""


@dataclass
class MicroGrads:
    """The micro-batch gradients of one update, reduced on the fly to what the two-batch
    noise-scale estimator needs (McCandlish et al. 2018, App. A.1)."""

    sq_norms: list[Tensor]
    """|G_small_i|^2: squared norm of micro-batch i's mean gradient (0-d tensors)."""
    counts: list[Tensor]
    """B_small_i: targets (LossOutput.count) of micro-batch i (0-d tensors)."""
    big_sq_norm: Tensor
    """|G_big|^2: squared norm of the whole update's mean gradient, before clipping."""
    total: Tensor
    """B_big: targets of the whole update."""


@dataclass
class Context:
    """Everything one due step offers the instruments. Fields an instrument did not ask
    for are None. Built by the runner only; instruments read it and never write to
    tensors in it (``cache``, ``histograms`` and ``notes`` are theirs to fill)."""

    step: int
    model: nn.Module
    task: Task
    batch: Any
    """The update's batch as the loop passed it (curvature and activations use all of it)."""
    samples: Any
    """Its first ``max_samples`` samples: what per-sample quantities and Alpha measure."""
    params: dict[str, nn.Parameter]
    """name -> live parameter (θ_{t+1} when measuring after the update); trainable only."""
    loss: float
    """Training loss of this update (sum over targets / count)."""
    lr: float
    fn: FunctionalModel
    """The model and task as functions of the parameters (torch.func), for evaluating at θ_t or θ_{t+1} without touching the live model."""
    grads: dict[str, Tensor] | None = None
    per_sample: PerSampleGrads | None = None
    """Gradient of each sample's mean loss at θ_t, with the shared reductions (persample.py)."""
    per_sample_losses: Tensor | None = None
    """(B,) each sample's mean loss at θ_t."""
    params_before: dict[str, Tensor] | None = None
    params_after: dict[str, Tensor] | None = None
    params_init: dict[str, Tensor] | None = None
    curvature: Curvature | None = None
    activations: Activations | None = None
    micro_grads: MicroGrads | None = None
    slopes: tuple[Tensor, Tensor] | None = None
    """(B,) losses and (B,) slopes g_iᵀd of this update's samples at θ_t along the direction
    a waiting two-step instrument offered (its ``slope_direction``), from the training step."""
    norms: frozenset[str] = frozenset()
    """The entries of :func:`norm_bank` the due instruments read (their ``norms``)."""
    cache: dict[str, Any] = field(default_factory=dict)
    """Shared reductions (e.g. per-sample moments), computed once per step by whoever asks first."""
    histograms: dict[str, Histogram] = field(default_factory=dict)
    """Histograms the instruments produced this step; the runner keeps them for the report."""
    notes: list[str] = field(default_factory=list)
    """One-line explanations for the user (e.g. why a quantity is missing); shown once."""

    @property
    def per_sample_grads(self) -> dict[str, Tensor] | None:
        """name -> (B, *shape), materialised on first use (costly for captured Linear
        layers: prefer the reductions of ``per_sample``)."""
        return self.per_sample.dense() if self.per_sample is not None else None


@runtime_checkable
class Instrument(Protocol):
    """One quantity. Its docstring gives the formula, the paper, what it needs and how to
    read it. ``measure`` is read-only; state (e.g. an EMA) lives in the instrument and is
    exposed through ``state_dict`` when it has any."""

    name: str
    needs: frozenset[str]

    def measure(self, ctx: Context) -> Metrics:
        """Keys ``inst/<name>`` or ``inst/<name>/<layer>``."""
        ...


class TwoStepInstrument(Instrument, Protocol):
    """An instrument that finishes a measurement at the next step (Cockpit's TwoStep kind,
    e.g. Alpha's far end on the next mini-batch). While ``pending`` is true the runner
    makes the next step due and calls ``follow_up`` with that step's context (θ_{t+1} as
    ``params_before``, the new batch) before any ``measure`` of that step."""

    @property
    def pending(self) -> bool: ...

    def follow_up(self, ctx: Context) -> Metrics: ...


def key(name: str, layer: str | None = None) -> str:
    """``inst/<name>`` or ``inst/<name>/<layer>``."""
    return f"inst/{name}" if layer is None else f"inst/{name}/{layer}"


NORMS = ("grads", "after", "before", "update", "init")
"""What :func:`norm_bank` holds per parameter tensor: the gradient, θ_{t+1}, θ_t, the
update θ_{t+1} − θ_t and the distance θ_{t+1} − θ_0. An instrument lists those it reads
in a ``norms`` attribute, so that one measurement computes them all together."""


def norm_bank(ctx: Context, which: str) -> tuple[list[str], Tensor]:
    """(names, (L,) squared norms per parameter tensor) of ``which`` (one of NORMS). The
    first call computes every entry the due instruments declared (``ctx.norms``) at once:
    the differences in one fused subtraction, all norms in one fused norm call and one
    stack, which costs little more than a single entry (each call has a fixed cost of
    tens of microseconds on a CPU). Cached per step."""
    bank: dict[str, tuple[list[str], Tensor]] = ctx.cache.setdefault("norms", {})
    if which not in bank:
        after = ctx.params_after
        assert after is not None
        names = list(after)
        todo = [k for k in NORMS if (k in ctx.norms or k == which) and k not in bank]
        sources = {"grads": ctx.grads, "after": after, "before": ctx.params_before}
        diffs = {k: base for k, base in (("update", ctx.params_before), ("init", ctx.params_init))
                 if k in todo and base is not None and k not in ctx.cache}
        if diffs:  # θ_{t+1} minus each base, in one call
            done = torch._foreach_sub([after[n] for _ in diffs for n in names],
                                      [b[n] for b in diffs.values() for n in names])
            for i, k in enumerate(diffs):
                ctx.cache[k] = dict(zip(names, done[i * len(names):(i + 1) * len(names)], strict=True))
        sources.update({k: ctx.cache.get(k) for k in ("update", "init")})
        todo = [k for k in todo if sources.get(k) is not None]
        if which not in todo:
            raise RuntimeError(f"norm_bank: the context holds no {which!r} (declare the need)")
        flat = [sources[k][n] for k in todo for n in names]  # type: ignore[index]
        sq = torch.stack(torch._foreach_norm(flat)).float().square().view(len(todo), len(names))
        bank.update({k: (names, v) for k, v in zip(todo, sq.unbind(), strict=True)})
    return bank[which]


def update_diff(ctx: Context) -> dict[str, Tensor]:
    """θ_{t+1} − θ_t per parameter (cached per step: UpdateSize and Alpha share it)."""
    if "update" not in ctx.cache:
        norm_bank(ctx, "update")
    return ctx.cache["update"]


def update_sq_norms(ctx: Context) -> tuple[list[str], Tensor]:
    """(names, (L,) ‖θ_{t+1} − θ_t‖² per parameter tensor), cached per step."""
    return norm_bank(ctx, "update")


def rng_devices(params: dict[str, Tensor]) -> list[torch.device]:
    """The CUDA devices whose RNG fork_rng must save and restore (the CPU one always is)."""
    return sorted({p.device for p in params.values() if p.device.type == "cuda"}, key=str)


def read_back(metrics: Metrics) -> dict[str, float]:
    """Every tensor value (0-d tensors and :class:`Vector` values) to floats in one host
    sync per device; a Vector gives one key per element."""
    out: dict[str, float] = {}
    scalars: dict[torch.device, list[tuple[str, Tensor]]] = {}
    vectors: dict[torch.device, list[Vector]] = {}
    for k, v in metrics.items():
        if isinstance(v, Tensor):
            scalars.setdefault(v.device, []).append((k, v))
        elif isinstance(v, Vector):
            vectors.setdefault(v.values.device, []).append(v)
        else:
            out[k] = float(v)
    for device in scalars.keys() | vectors.keys():
        items, vecs = scalars.get(device, []), vectors.get(device, [])
        parts = [v.values.detach().float().reshape(-1) for v in vecs]
        if items:  # most are 0-d float32 results of no-grad math: stacked as they are
            parts.insert(0, torch.stack([
                v if v.dtype is torch.float32 and v.dim() == 0 and not v.requires_grad
                else v.detach().float().reshape(())
                for _, v in items
            ]))
        values = (torch.cat(parts) if len(parts) > 1 else parts[0]).tolist()
        keys = [k for k, _ in items] + [k for v in vecs for k in v.keys]
        out.update(zip(keys, values, strict=True))
    return dict(sorted(out.items()))
