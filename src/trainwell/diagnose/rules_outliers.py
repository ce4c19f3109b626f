"""The rule on outliers that grow during training (the ``outliers`` instrument's series).

Outliers do no harm to fp32 training; they decide what quantisation costs afterwards (an
int8 grid spans a row's or a token's largest value). LLM.int8() (Dettmers et al. 2022) found
outlier features of magnitude ~20x the rest breaking 8-bit inference; on the default byte GPT
the worst input (the MLP down-projection's) peaks at max/std 27 and ends at 11-24, where int8 loses
nothing measurable (-0.02 % bits per byte). Input kurtosis is not used: it grows from 3 to
15-41 in that healthy training (a GELU's output is heavy-tailed by nature). Used by ``trainwell diagnose`` (its short run) and the run report.
"""

from __future__ import annotations

from trainwell.diagnose.findings import Finding
from trainwell.instruments.outliers import MAX_STD_BAR

GROWTH = 1.5
"""A layer's outliers grow when its newest reading is at least 1.5x its first one: a
Gaussian's max/std moves by less than 10 % between draws of one size, so 1.5x is the tensor
changing, not sampling noise."""

Series = dict[str, list[tuple[int, float]]]
"""layer -> [(step, value)] in step order."""


def outliers_growing(max_std: Series) -> Finding | None:
    """A finding when some layer's input max/std rose above MAX_STD_BAR while growing
    GROWTH-fold since its first measurement."""
    grown = _grown(max_std, MAX_STD_BAR, "max/std")
    if not grown:
        return None
    layers = sorted({layer for layer, _ in grown})
    evidence = dict(grown)
    skips = " ".join(f"--skip {n}" for n in layers)
    return Finding(
        id="outliers_growing",
        title=f"Outliers grow in the input of {', '.join(layers)}: int8 quantisation will lose "
              "precision there",
        severity="low",
        evidence=evidence,
        fix=f"keep the layer in full precision when quantising (`trainwell quantize RUN_DIR {skips}`, "
            "which proposes it), or check its quantised SQNR in the verdict; if they keep growing, more "
            "weight decay or a lower learning rate slows them (training itself is not harmed)",
        source=f"a layer input above max/std {MAX_STD_BAR:g} (trainwell's default byte GPT: 27 at most, int8 "
               "lossless there); LLM.int8() (Dettmers et al. 2022) on outlier features",
    )


def _grown(series: Series, bar: float, what: str) -> list[tuple[str, str]]:
    out = []
    for layer, points in series.items():
        if len(points) < 2:
            continue
        (s0, first), (s1, last) = points[0], points[-1]
        if last > bar and last >= GROWTH * first:
            out.append((layer, f"input {what} {first:.3g} at step {s0} -> {last:.3g} at step {s1}"))
    return out
