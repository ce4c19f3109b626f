"""Alpha's far end from per-sample slopes summed during the follow-up step's own backward
(slopes.py), against the full capture's projections and against the line search."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from inst_helpers import ClsTask, captured_step, cls_batch, runner_for
from test_inst_capture import LMTask, TinyLM, lm_batch, ln_mlp
from torch import nn

from trainwell.instruments.capture import BackwardCapture
from trainwell.instruments.slopes import SlopeCapture


class PaddedLM(TinyLM):
    """TinyLM whose embedding has a padding row (it never receives a gradient)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(11, 6, padding_idx=0)


def frozen_weight_mlp() -> nn.Module:
    model = ln_mlp()
    model[0].weight.requires_grad_(False)  # only its bias trains
    return model


CASES = [
    (ln_mlp, ClsTask(), lambda s: cls_batch(seed=s, n=8)),
    (frozen_weight_mlp, ClsTask(), lambda s: cls_batch(seed=s, n=8)),
    (lambda: TinyLM(tied=True), LMTask(), lambda s: lm_batch(seed=s, n=4)),
    (PaddedLM, LMTask(), lambda s: lm_batch(seed=s, n=4)),
]


def run_alpha(factory: Any, task: Any, batch: Any, slopes: bool, monkeypatch: Any, calls: dict[str, int]) -> list[dict[str, float]]:
    model = factory()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.2)
    runner = runner_for(model, task, preset="off", include=("alpha",), every=2)
    if not slopes:  # every follow-up by the full capture and its projections
        monkeypatch.setattr(runner, "_slope_direction", lambda: None)
    out = []
    for s in range(7):  # measured at 0, 2, 4, 6; far ends at 1, 3, 5 (two micro-batches each)
        x, y = batch(s)
        out.append(captured_step(model, task, [(x[:2], y[:2]), (x[2:], y[2:])], opt, runner, s))
    assert runner.warnings == [], runner.warnings
    calls["trusted"] = int(runner._capture is not None and runner._capture.trusted)
    return out


@pytest.mark.parametrize(("factory", "task", "batch"), CASES, ids=["mlp", "frozen-weight", "tied-lm", "padded-lm"])
def test_slopes_give_the_alpha_of_the_full_capture(factory, task, batch, monkeypatch) -> None:  # noqa: ANN001
    counts = {"slopes": 0, "full": 0}
    take_s, take_f = SlopeCapture.take, BackwardCapture.take

    def count_s(self: SlopeCapture) -> Any:
        counts["slopes"] += 1
        return take_s(self)

    def count_f(self: BackwardCapture) -> Any:
        counts["full"] += 1
        return take_f(self)

    monkeypatch.setattr(SlopeCapture, "take", count_s)
    monkeypatch.setattr(BackwardCapture, "take", count_f)
    info: dict[str, int] = {}
    got = run_alpha(factory, task, batch, True, monkeypatch, info)
    assert info["trusted"] == 1
    assert counts == {"slopes": 3, "full": 4}  # the far ends kept no factors
    counts.update(slopes=0, full=0)
    ref = run_alpha(factory, task, batch, False, monkeypatch, info)
    assert counts == {"slopes": 0, "full": 7}
    values = [m["inst/alpha"] for m in got if "inst/alpha" in m]
    assert len(values) == 3
    assert values == pytest.approx([m["inst/alpha"] for m in ref if "inst/alpha" in m], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("factory", [lambda: TinyLM(tied=True), PaddedLM], ids=["tied-lm", "padded-lm"])
def test_slopes_equal_the_projection_of_the_captured_per_sample_gradients(factory) -> None:  # noqa: ANN001
    """Directly: SlopeCapture's sums equal PerSampleGrads.project of the full capture on the
    same forward and backward (LMs over sequences, two micro-batches; a random direction,
    non-zero on the padding row, which receives no gradient)."""
    model, task = factory(), LMTask()
    x, y = lm_batch(seed=3, n=6)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(0)
    direction = {n: torch.randn(p.shape, generator=g) for n, p in params.items()}
    full = BackwardCapture(model, list(params))
    slopes = SlopeCapture(full.layers)
    full.arm()
    slopes.arm(direction)  # both hooked on the same passes
    from trainwell.instruments.capture import micro_scale

    for sl in (slice(0, 2), slice(2, 6)):
        out = task.loss(model, (x[sl], y[sl]))
        (out.sum / 42.0).backward()
        n = x[sl].shape[0]
        full.close_micro(n, out.count, 1 / 42.0, out.per_sample)
        scale, losses = micro_scale(n, out.count, 1 / 42.0, out.per_sample)
        slopes.close_micro(n, scale, losses)
    captured = full.take()
    got = slopes.take()
    assert captured is not None and got is not None
    torch.testing.assert_close(got[0], captured.losses)
    torch.testing.assert_close(got[1], captured.grads.project(direction), rtol=1e-4, atol=1e-5)
