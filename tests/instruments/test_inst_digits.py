"""Integration: the built-in digits task (residual MLP with LayerNorm) under every preset."""

from __future__ import annotations

import math

import pytest
import torch

from trainwell.config import load_config
from trainwell.instruments import InstrumentRunner, InstrumentsConfig
from trainwell.tasks import build_task


@pytest.fixture(scope="module")
def digits():  # noqa: ANN201
    task = build_task(load_config(overrides=["task.name=digits"]))
    data = task.train_data()
    batches = [task.collate([data[i] for i in range(s * 16, s * 16 + 16)]) for s in range(3)]
    return task, batches


# full adds sequential Hessian-vector products: seconds on a busy 2-core machine
@pytest.mark.parametrize(
    "preset", ["minimal", "economy", pytest.param("full", marks=pytest.mark.slow)]
)
def test_digits_under_a_preset(digits, preset: str) -> None:  # noqa: ANN001
    task, batches = digits
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = InstrumentsConfig(preset=preset, every=2, hess_iters=5, hess_samples=2)
    runner = InstrumentRunner(model, task, cfg, strict=True)
    measured = []
    for step, batch in enumerate(batches):
        opt.zero_grad()
        out = task.loss(model, batch)
        loss = out.sum / out.count
        loss.backward()
        runner.before_update(step, batch, float(loss.detach()), 3e-3)
        opt.step()
        measured.append(runner.after_update(step))
    # economy and full: the step after a measurement finishes Alpha on the next batch
    assert [bool(m) for m in measured] == [True, preset != "minimal", True]
    assert preset == "minimal" or set(measured[1]) == {"inst/alpha"}
    m = measured[-1]
    assert all(math.isfinite(v) for k, v in m.items() if not k.startswith("inst/update_ratio/"))
    assert m["inst/final_act_rms"] > 0
    if preset != "minimal":
        assert -1.0 <= measured[1]["inst/alpha"] < 10
        assert "inst/grad_hist1d/std" in m and "inst/act_mean/body.1.act" in m
        assert runner.histograms()["grad_hist1d"][-1].counts.sum() > 0
    if preset == "full":
        assert m["inst/hess_max_ev"] != 0 and "inst/tic" in m
    assert runner.warnings == []


def test_include_with_preset_off_runs_the_included_instruments(tmp_path) -> None:  # noqa: ANN001
    """Regression: the loop built no runner at all when the preset was off."""
    from trainwell.train.loop import run

    cfg = load_config(overrides=["task.name=digits", "train.steps=3", "train.eval_every=0", "schedule.warmup_steps=1",
                                 "instruments.preset=off", 'instruments.include=["grad_norm"]',
                                 "instruments.every=1", "instruments.per_layer=false"])
    result = run(cfg, run_dir=tmp_path / "run", progress=False)
    measured = [h for h in result.history if "inst/grad_norm" in h]
    assert len(measured) == 3
    assert not any(k.startswith("inst/") and k != "inst/grad_norm" for h in measured for k in h)


def test_economy_in_the_loop_takes_per_sample_gradients_from_the_backward(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The built-in digits MLP (Linear + LayerNorm) is captured: torch.func never runs."""
    from trainwell.instruments.functional import FunctionalModel
    from trainwell.train.loop import run

    def refuse(*_: object) -> None:
        raise AssertionError("torch.func per-sample gradients were computed")

    monkeypatch.setattr(FunctionalModel, "per_sample_grads", refuse)
    cfg = load_config(overrides=["task.name=digits", "train.steps=4", "train.eval_every=0", "schedule.warmup_steps=1",
                                 "train.accumulate=2", "instruments.preset=economy", "instruments.every=1"])
    result = run(cfg, run_dir=tmp_path / "run", progress=False)
    rows = [h for h in result.history if "inst/norm_test" in h]
    assert len(rows) == 4 and not any(k.startswith(("inst/failed", "inst/unsupported")) for h in rows for k in h)
    assert sum("inst/alpha" in h for h in result.history) == 3  # finished one step later
