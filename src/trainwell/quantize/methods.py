"""The quantisation methods, each a torchao ``quantize_`` config (torchao's tensor
subclasses; ``torch.ao.quantization`` is deprecated and past its announced removal).

Each method lists the configs to try in order: the first that quantises this model and
runs a forward is used, and the ones that could not run are kept as notes ("packed int4
needs ...") for the verdict. A method none of whose configs runs here is *not available*,
with the reason, never a crash.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

INT4_GROUP = 32
"""Weights per int4 scale: 32 is the finest group torchao's int4 kernels take and costs the
least accuracy (measured on a byte GPT: +0.2 % bits per byte at group 32)."""


@contextmanager
def _quiet_import() -> Iterator[None]:
    """torchao's import logs that its CUDA-only kernels (``_C_mxfp8``, ``_C_cutlass_90a``) do
    not load on a CPU, and torch warns about enum registrations: harmless, so not shown."""
    names = ("torchao", "torch.utils._pytree")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def torchao() -> Any:
    """The torchao module, imported quietly (about a second); a QuantizeError if missing."""
    from trainwell.quantize.errors import QuantizeError

    try:
        with _quiet_import():
            import torchao as ao
            import torchao.quantization  # noqa: F401
    except ImportError as e:
        raise QuantizeError(
            f"torchao is not installed ({e}); install it with `pip install torchao` "
            "(trainwell's dependencies include it)"
        ) from None
    return ao


@dataclass(frozen=True)
class Candidate:
    """One torchao config a method may run."""

    label: str
    """What ran, in words (shown in the verdict)."""
    build: Callable[[], Any]
    """() -> the torchao config (built lazily: torchao imports only when used)."""
    note: str = ""
    """What the verdict should say when this candidate is the one that ran."""


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    candidates: tuple[Candidate, ...]
    tied_in_fp32: bool = False
    """Keep a linear layer whose weight is tied to another module (an LM head read as the
    embedding) in full precision."""


def _int8_weight() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerRow

    # per row (one scale per output channel): finer than per tensor at 4 bytes a row
    return Int8WeightOnlyConfig(granularity=PerRow())


def _int8_dynamic() -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    from torchao.quantization.granularity import PerRow

    # activations quantised per token at run time (symmetric), weights per row; no
    # reduce_range: it is for CPUs without VNNI and costs a bit of precision elsewhere
    return Int8DynamicActivationInt8WeightConfig(granularity=PerRow())


def _int4_packed() -> Any:
    from torchao.quantization import Int4WeightOnlyConfig

    return Int4WeightOnlyConfig(group_size=INT4_GROUP)


def _int4_unpacked() -> Any:
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    # asymmetric (a zero point per group), as Int4WeightOnlyConfig's scheme: on the default
    # byte GPT 0.78 % bits per byte against 1.07 % symmetric (one run, 16 evaluation batches)
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP),
                                mapping_type=MappingType.ASYMMETRIC)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("int8-weight", "int8 weights (per row), fp32 activations",
               (Candidate("Int8WeightOnlyConfig(PerRow)", _int8_weight),)),
        Method("int8-dynamic", "int8 weights (per row) and int8 activations (per token, at run time)",
               (Candidate("Int8DynamicActivationInt8WeightConfig(PerRow)", _int8_dynamic),)),
        Method("int4-weight", f"int4 weights (groups of {INT4_GROUP}), fp32 activations", (
            Candidate(f"Int4WeightOnlyConfig(group_size={INT4_GROUP})", _int4_packed),
            Candidate(f"IntxWeightOnlyConfig(int4, PerGroup({INT4_GROUP}), asymmetric)", _int4_unpacked,
                      note="int4 values held one per byte (torchao's portable layout): "
                           "no smaller than int8 on disk"),
        # a tied head is also the embedding: at 4 bits every token's input vector is coarse
        # too (default byte GPT: +0.78 % bits per byte with it, +0.42 % kept in fp32)
        ), tied_in_fp32=True),
    )
}
"""Name -> method, in the order the verdict lists them."""


@dataclass
class Applied:
    """The outcome of quantising one model with one method."""

    method: str
    model: nn.Module | None
    """The quantised copy (None when the method is not available here)."""
    config: str = ""
    """The candidate that ran."""
    notes: list[str] = field(default_factory=list)
    """Candidates that could not run and why, and what the one that ran implies."""
    quantized: list[str] = field(default_factory=list)
    """Names of the layers whose weights were quantised."""
    why_not: str = ""
    """Why no candidate ran (empty when one did)."""
    retied: list[str] = field(default_factory=list)
    """Tied weights pointed at the quantised tensor again ('a.weight = b.weight')."""
    kept: list[str] = field(default_factory=list)
    """Linear layers left in fp32 (asked for, or the method's own choice)."""


def apply_method(
    model: nn.Module, method: Method, skip: set[str], probe: Callable[[nn.Module], Any]
) -> Applied:
    """A quantised deep copy of ``model`` (nn.Linear layers not in ``skip``); ``probe`` runs
    a forward on the copy, so a config that quantises but cannot compute here fails now."""
    from trainwell.quantize.ties import retie, tie_groups

    ao = torchao()
    out = Applied(method.name, None)
    failed: list[str] = []
    tied: set[str] = set()
    if method.tied_in_fp32:
        tied = {m for group in tie_groups(model) for m, _ in group
                if isinstance(model.get_submodule(m), nn.Linear) and m not in skip}
        skip = skip | tied
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in skip]
    for cand in method.candidates:
        q = copy.deepcopy(model)
        groups = tie_groups(q)

        def wanted(module: nn.Module, fqn: str) -> bool:
            return isinstance(module, nn.Linear) and fqn not in skip

        try:
            with _quiet_import():
                ao.quantization.quantize_(q, cand.build(), filter_fn=wanted)
            # quantize_ replaces weights one module at a time, so a weight shared by an
            # embedding and a linear head comes out as two tensors: tie them again
            retied = retie(q, groups)
            probe(q)
        except Exception as e:  # noqa: BLE001 (any failure of a config means "not here")
            failed.append(f"{cand.label} not available here: {_first_line(e)}")
            continue
        out.model, out.config, out.retied, out.kept = q, cand.label, retied, sorted(skip)
        out.quantized = [n for n in linears if is_quantized(q.get_submodule(n).weight)]
        out.notes = failed + ([cand.note] if cand.note else []) + [
            f"{m} kept in fp32: its weight is tied to another module (the embedding)" for m in sorted(tied)]
        return out
    out.why_not = "; ".join(failed)
    return out


def is_quantized(t: torch.Tensor) -> bool:
    """Whether ``t`` is one of torchao's quantised tensor subclasses."""
    data = t.data if isinstance(t, nn.Parameter) else t
    return type(data) is not torch.Tensor and hasattr(data, "dequantize")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
