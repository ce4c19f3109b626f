"""The runner: schedule, read-only guarantee, BatchNorm reporting, failure isolation, state."""

from __future__ import annotations

import copy

import pytest
import torch
from inst_helpers import ClsTask, cls_batch, mlp, runner_for, train_step
from pydantic import ValidationError
from torch import nn

from trainwell.instruments import InstrumentRunner, InstrumentsConfig, instrument_names
from trainwell.instruments.base import GRADS, Context


def _bn_dropout_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3)
    )


def _train(
    model: nn.Module, runner: InstrumentRunner | None, steps: int = 4
) -> list[dict[str, float]]:
    task = ClsTask()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    torch.manual_seed(123)  # dropout draws from the global stream
    return [train_step(model, task, cls_batch(seed=s), opt, runner, s) for s in range(steps)]


@pytest.mark.parametrize("factory", [mlp, _bn_dropout_net])
def test_instruments_never_change_the_training_trajectory(factory) -> None:  # noqa: ANN001
    plain = factory()
    _train(plain, None)
    watched = factory()
    runner = runner_for(
        watched,
        ClsTask(),
        preset="full",
        include=("mean_gsnr", "cabs", "early_stopping"),
        hess_iters=10,  # the point is read-only-ness, not convergence
    )
    metrics = _train(watched, runner)
    assert all(m for m in metrics)  # every step was measured
    for (n, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), n  # parameters and BatchNorm buffers, bit for bit


def test_gradients_are_untouched_by_the_measurement() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    runner = runner_for(model, task, preset="full")
    out = task.loss(model, batch)
    (out.sum / out.count).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    runner.before_update(0, batch, 0.0, 0.1)
    runner.after_update(0)  # measuring before the step here: .grad must survive it
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


def test_only_due_steps_are_measured() -> None:
    model, task = mlp(), ClsTask()
    runner = runner_for(model, task, preset="economy", every=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = {s: train_step(model, task, cls_batch(seed=s), opt, runner, s) for s in range(7)}
    assert [s for s, m in out.items() if m] == [0, 1, 3, 4, 6]
    assert set(out[1]) == set(out[4]) == {"inst/alpha"}  # Alpha's far end, on the next batch
    assert "inst/alpha" not in out[0] and "inst/norm_test" in out[0]
    assert [runner.due(s) for s in (7, 8, 9)] == [True, False, True]


def test_a_skipped_update_is_not_measured() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    runner = runner_for(model, task, preset="minimal")
    runner.before_update(0, batch, 0.0, 0.1)  # the guards then skip: no after_update(0)
    assert runner.after_update(1) == {}
    runner.before_update(0, batch, 0.0, 0.1)
    assert runner.after_update(0) != {}


def test_batchnorm_is_reported_not_skipped() -> None:
    model = _bn_dropout_net()
    runner = InstrumentRunner(model, ClsTask(), InstrumentsConfig(preset="economy", every=1))
    m = _train(model, runner, steps=1)[0]
    assert m["inst/unsupported/1"] == 1.0
    assert "inst/norm_test" in m and "inst/grad_hist1d/std" in m
    assert any("BatchNorm" in w and "1" in w for w in runner.warnings)
    assert (
        "inst/unsupported/1"
        not in _train(mlp(), runner_for(mlp(), ClsTask(), preset="economy"), 1)[0]
    )


class ItemModel(nn.Module):
    """Data-dependent control flow: cannot run under vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * (2.0 if x.sum().item() > 0 else 1.0)


def test_a_model_vmap_cannot_run_loses_only_per_sample_instruments_with_a_warning() -> None:
    model, task = ItemModel(), ClsTask()
    runner = InstrumentRunner(model, task, InstrumentsConfig(preset="economy", every=1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    m = train_step(model, task, cls_batch(), opt, runner, 0)
    assert m["inst/unsupported/per_sample_grads"] == 1.0
    assert "inst/grad_norm" in m and "inst/norm_test" not in m
    assert any("per-sample gradients" in w and "norm_test" in w for w in runner.warnings)
    m = train_step(model, task, cls_batch(), opt, runner, 1)
    assert "inst/alpha" in m  # Alpha does not need per-sample gradients
    assert "inst/unsupported/per_sample_grads" not in m


class Broken:
    """An instrument that fails."""

    name = "broken"
    needs = frozenset({GRADS})

    def measure(self, ctx: Context) -> dict[str, float]:
        raise ValueError("boom")


def test_a_failing_instrument_is_disabled_with_a_warning_and_strict_reraises() -> None:
    model, task, batch = mlp(), ClsTask(), cls_batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    from trainwell.instruments import GradNorm

    runner = InstrumentRunner(
        model, task, InstrumentsConfig(every=1), instruments=[Broken(), GradNorm()]
    )
    m = train_step(model, task, batch, opt, runner, 0)
    assert m["inst/failed/broken"] == 1.0 and "inst/grad_norm" in m
    assert any("broken" in w and "boom" in w for w in runner.warnings)
    assert "inst/failed/broken" not in train_step(model, task, batch, opt, runner, 1)
    strict = InstrumentRunner(
        model, task, InstrumentsConfig(every=1), instruments=[Broken()], strict=True
    )
    with pytest.raises(ValueError, match="boom"):
        train_step(model, task, batch, opt, strict, 0)


def test_state_dict_keeps_the_initialisation_and_the_noise_scale_ema() -> None:
    model, task = mlp(), ClsTask()
    runner = runner_for(model, task, preset="off", include=("distance", "noise_scale_ps"))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for s in range(3):
        train_step(model, task, cls_batch(seed=s), opt, runner, s)
    state = copy.deepcopy(runner.state_dict())
    resumed = runner_for(model, task, preset="off", include=("distance", "noise_scale_ps"))
    resumed.load_state_dict(state)
    a = train_step(
        copy.deepcopy(model),
        task,
        cls_batch(seed=9),
        torch.optim.SGD(model.parameters(), lr=0.0),
        runner,
        3,
    )
    b = train_step(
        model, task, cls_batch(seed=9), torch.optim.SGD(model.parameters(), lr=0.0), resumed, 3
    )
    assert a["inst/distance"] == pytest.approx(b["inst/distance"]) and a["inst/distance"] > 0
    assert a["inst/noise_scale_ps"] == pytest.approx(b["inst/noise_scale_ps"])


def test_presets_nest_and_include_exclude_compose() -> None:
    names = {
        p: set(instrument_names(InstrumentsConfig(preset=p)))
        for p in ("minimal", "economy", "business", "full")
    }
    cockpit_economy = {
        "alpha",
        "distance",
        "grad_hist1d",
        "grad_norm",
        "inner_test",
        "norm_test",
        "ortho_test",
        "update_size",
    }
    assert cockpit_economy <= names["economy"]
    assert names["economy"] | {"tic", "hess_trace"} == names["business"]
    assert names["business"] | {"hess_max_ev", "grad_hist2d"} == names["full"]
    assert instrument_names(InstrumentsConfig(preset="off")) == []
    cfg = InstrumentsConfig(
        preset="minimal", include=("mean_gsnr", "grad_norm"), exclude=("final_act",)
    )
    assert instrument_names(cfg) == [
        "grad_norm",
        "param_norm",
        "update_size",
        "noise_scale",
        "mup_update",
        "mean_gsnr",
    ]


def test_config_rejects_unknown_names_and_keys_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="did you mean 'alpha'"):
        InstrumentsConfig(include=("alpah",))
    with pytest.raises(ValidationError, match="exclude"):
        InstrumentsConfig(exclude=("nope",))
    with pytest.raises(ValidationError):
        InstrumentsConfig(evrey=4)
    with pytest.raises(ValidationError):
        InstrumentsConfig(every=0)
    cfg = InstrumentsConfig(preset="business", every=8, include=["cabs"])
    # TOML-friendly round trip
    assert InstrumentsConfig.model_validate(cfg.model_dump(mode="json")) == cfg
