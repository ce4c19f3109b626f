"""Outliers: the long tails of each linear layer's weight and input, which decide how well
the layer survives quantisation.

An int8 grid spans the largest value of a row (weights) or a token (activations): one value
20 standard deviations out leaves the bulk of the values a handful of levels. LLM.int8()
(Dettmers et al. 2022) traced int8's failures on large models to a few such outlier feature
dimensions; on trainwell's default byte GPT the input of the MLP's down-projection (after the
GELU) is the first to grow them (max/std 6 at init, a peak of 27 at step 193, 12-16 at the
end; every other input at most 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.instruments.base import Context, Metrics, Vector, key

MAX_STD_BAR = 40.0
"""A layer input whose max|x|/std exceeds this has outliers worth keeping in full precision.
Measured on the default byte GPT after its 900 steps: the MLP down-projection inputs reach
11-24 (first evaluation batch; during a second run they peaked at 27) and int8 per-token
quantisation still changes bits per byte by -0.02 %; at 40 a token's bulk gets about 3 int8 levels per standard deviation (127 / 40)."""
KURTOSIS_BAR = 10.0
"""Weight kurtosis (Gaussian: 3) above which a weight's tails are heavy: the default byte
GPT's trained weights measure 2.6-4.1. Not applied to inputs: a GELU's output is heavy-tailed
by nature (the same model's MLP down-projection inputs: 15-41, int8 lossless there)."""
KINDS = ("in_max_std", "in_kurt", "w_max_std", "w_kurt")
"""What is measured per layer: input and weight, max|x|/std and kurtosis."""


def tail_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """(max|x| / std(x), kurtosis E[(x-μ)⁴]/σ⁴) over all elements of ``x``, as 0-d tensors
    (no host sync). NaN for a constant tensor."""
    x = x.detach().float().reshape(-1)
    centred = x - x.mean()
    var = centred.square().mean()
    var = torch.where(var > 0, var, torch.nan)  # a constant tensor has no tails to speak of
    return x.abs().max() / var.sqrt(), centred.pow(4).mean() / var.square()


class Outliers:
    """Per nn.Linear layer: max|x|/std and kurtosis of its input and of its weight
    (``inst/outlier_<kind>/<layer>`` for kind in in_max_std, in_kurt, w_max_std, w_kurt),
    and the largest of each over the layers (``inst/outlier_<kind>``).

    Needs: nothing from the step; one forward of the measured samples (``instruments.
    max_samples``) at the current weights with forward pre-hooks on the linear layers.
    Reading: inputs of a healthy small GPT stay at max/std of about 4-7 except the MLP
    down-projection's (up to 27 on the default byte GPT, where int8 is still lossless); an input
    that keeps growing past 40, or a weight kurtosis past 10, marks a layer to keep in full
    precision when quantising (``trainwell quantize`` proposes it). The maximum over several draws grows slowly with the
    number of elements (a Gaussian: about 4.5 at 10⁵, 5.3 at 10⁷).
    """

    name = "outliers"
    needs: frozenset[str] = frozenset()

    def measure(self, ctx: Context) -> Metrics:
        model = ctx.fn.model
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            ctx.notes.append("outliers: the model has no nn.Linear layer to watch")
            return {}
        seen: dict[str, Tensor] = {}
        handles = []
        for name, module in linears:
            def keep(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                if name not in seen:  # a layer called twice: its first input
                    seen[name] = tail_stats(args[0])

            handles.append(module.register_forward_pre_hook(keep))
        try:
            ctx.fn.loss_output(None, ctx.samples)
        finally:
            for h in handles:
                h.remove()
        keys, values = [], []
        for name, module in linears:
            if name not in seen:
                continue
            w = tail_stats(module.weight)
            for kind, v in zip(KINDS, (*seen[name], *w), strict=True):
                keys.append(key(f"outlier_{kind}", name))
                values.append(v)
        stacked = torch.stack(values).view(-1, len(KINDS))  # (layers, kinds)
        keys += [key(f"outlier_{kind}") for kind in KINDS]
        values = torch.cat([stacked.reshape(-1), stacked.nan_to_num(nan=-1.0).amax(dim=0)])
        return {key(self.name): Vector(keys, values)}


@dataclass
class Measurement:
    """The outlier instrument's newest row of a run's metrics."""

    step: int
    layers: dict[str, dict[str, float]]
    """layer -> {kind: value}."""


def series(rows: list[dict[str, Any]], kind: str) -> dict[str, list[tuple[int, float]]]:
    """layer -> [(step, value)] of one kind over a run's metric rows."""
    prefix = f"inst/outlier_{kind}/"
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for k, v in row.items():
            if k.startswith(prefix) and isinstance(v, int | float):
                out.setdefault(k[len(prefix):], []).append((int(row.get("step", 0)), float(v)))
    return out


def last_measurement(run_dir: str | Path) -> Measurement | None:
    """The newest outlier measurement in ``run_dir/metrics.jsonl`` (None when the run had
    the instrument off or has no metrics)."""
    from trainwell.sinks.jsonl import read_jsonl

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [r for r in read_jsonl(path) if any(k.startswith("inst/outlier_in_max_std/") for k in r)]
    if not rows:
        return None
    last = rows[-1]
    layers: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        prefix = f"inst/outlier_{kind}/"
        for k, v in last.items():
            if k.startswith(prefix):
                layers.setdefault(k[len(prefix):], {})[kind] = float(v)
    return Measurement(int(last.get("step", 0)), layers)
