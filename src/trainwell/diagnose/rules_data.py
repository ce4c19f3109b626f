"""Rules on the data: input scale and centring, and what the data probes (probes_data.py) saw:
labels that do not go with their inputs, outputs that are already probabilities, regression
targets far from the outputs' scale, evaluation samples shared with training, an evaluation
split whose inputs differ from training's.
"""

from __future__ import annotations

import math

from trainwell.diagnose.findings import Finding
from trainwell.diagnose.probes import InputStats

INPUT_SCALE = 10.0
"""Inputs not scaled: the input standard deviation is more than this factor away from 1.
Default inits assume unit-scale inputs (Xavier/He derivations); a factor 10 scales every
first-layer pre-activation by 10 (Cockpit's mis-scaled-data example multiplies by 255)."""

INPUT_OFFSET = 1.0
"""Inputs not centred: the per-feature means are larger (RMS) than the per-feature spread.
All-positive inputs make every weight's gradient share a sign and the steps zig-zag (EECE454
lecture, 'Data preprocessing'); 1 is where the shared offset outweighs the signal."""


def inputs_not_scaled(stats: InputStats | None) -> Finding | None:
    if stats is None or not math.isfinite(stats.std) or 1 / INPUT_SCALE <= stats.std <= INPUT_SCALE:
        return None
    return Finding(
        "inputs_not_scaled", f"Inputs not scaled: their standard deviation is {stats.std:.3g} (expected ~1)", "medium",
        {"input std": stats.std, "input min": stats.minimum, "input max": stats.maximum, "samples": stats.samples},
        "Divide the inputs by their standard deviation (or by the pixel range, e.g. 255) computed on the training split.",
        "Xavier/He inits assume unit-scale inputs; Cockpit's x255 example; threshold 10x",
    )


def inputs_not_centred(stats: InputStats | None) -> Finding | None:
    if stats is None or not math.isfinite(stats.offset) or stats.offset <= INPUT_OFFSET:
        return None
    return Finding(
        "inputs_not_centred", "Inputs not centred: a shared offset outweighs their variation", "medium",
        {"per-feature mean / spread (RMS)": stats.offset, "input mean": stats.mean, "input std": stats.std},
        "Subtract the per-feature (or per-channel) mean of the training split from the inputs.",
        "EECE454 lecture, 'Data preprocessing': all-positive inputs make gradient steps zig-zag; threshold 1",
    )
