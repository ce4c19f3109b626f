"""The live coordinate check: under muP the hidden update/weight ratio (spectral norm) of the
first update is the same at width 32 and 256; with one lr for every group (a scheduler that
overwrote muP's per-group lr) it grows with the width."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainwell.instruments import InstrumentRunner, InstrumentsConfig
from trainwell.instruments.mup_update import spectral_norm
from trainwell.models import ModelSpec, build_model
from trainwell.models.config import ModelConfig
from trainwell.optim import build_optimizer
from trainwell.optim.config import OptimConfig
from trainwell.tasks.base import LossOutput, Task


class Cls(Task):
    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch
        ps = F.cross_entropy(model(x), y, reduction="none")
        return LossOutput(ps.sum(), float(len(y)), {}, ps)


def first_update_ratios(width: int, per_role_lr: bool) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", depth=2, residual=False, norm="none", activation="relu",
                                    width=width, parametrization="mup", mup_base_width=32),
                        ModelSpec(input_shape=(64,), num_classes=10))
    if per_role_lr:
        opt = build_optimizer(OptimConfig(lr=3e-3, weight_decay=0.0), model)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    task = Cls()
    runner = InstrumentRunner(model, task, InstrumentsConfig(preset="off", include=("mup_update",), every=1),
                              strict=True)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g))
    runner.begin(0, micro=1)
    out = task.loss(model, batch)
    (out.sum / out.count).backward()
    runner.after_micro_backward(0, out.count, 1.0 / out.count)
    runner.before_update(0, batch, (out.sum / out.count).item(), 3e-3)
    opt.step()
    return runner.after_update(0)


def test_hidden_ratio_is_width_free_under_mup_and_grows_with_one_lr() -> None:
    mup = [first_update_ratios(w, True)["inst/mup_update/hidden"] for w in (32, 256)]
    one = [first_update_ratios(w, False)["inst/mup_update/hidden"] for w in (32, 256)]
    assert mup[1] / mup[0] == pytest.approx(1.0, abs=0.25)
    assert one[1] / one[0] > 4  # lr not divided by m = 8: the hidden update is ~8x too big
    assert mup[0] == pytest.approx(one[0])  # at the base width the two are the same run


def test_reports_every_role_but_fixed() -> None:
    keys = set(first_update_ratios(64, True))
    assert keys == {"inst/mup_update/input", "inst/mup_update/hidden", "inst/mup_update/output"}


def test_spectral_norm_matches_the_exact_one() -> None:
    a = torch.randn(40, 30) @ torch.diag(torch.linspace(0.1, 3.0, 30))  # a clear top singular value
    assert spectral_norm(a).item() == pytest.approx(torch.linalg.matrix_norm(a, ord=2).item(), rel=1e-3)
    v = torch.randn(7)
    assert spectral_norm(v).item() == pytest.approx(v.norm().item())
    state = torch.random.get_rng_state()
    spectral_norm(a)
    assert torch.equal(torch.random.get_rng_state(), state)  # its own generator
