"""The per-sample evidence of a refused update, gathered from every rank, so that every
rank quarantines the same samples (the sampler's exclude set must stay identical).

Only on the rare refused step: one ``all_gather_object`` of small CPU tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainwell.dist.context import DistContext

if TYPE_CHECKING:
    from trainwell.train.step import StepOutput


def gather_step_output(ctx: DistContext, out: StepOutput) -> StepOutput:
    """``out`` with every rank's per-sample losses and input norms, in rank order."""
    from trainwell.train.step import StepOutput

    mine = (
        [(i.cpu(), loss.float().cpu()) for i, loss in out.per_sample],
        [(i.cpu(), n.cpu(), d) for i, n, d in out.input_norms],
    )
    everyone = ctx.gather_objects(mine)
    per_sample = [pair for ps, _ in everyone for pair in ps]
    input_norms = [triple for _, norms in everyone for triple in norms]
    return StepOutput(per_sample=per_sample, input_norms=input_norms)
