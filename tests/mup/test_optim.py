"""muP's optimizer groups: per-role lr, eps and weight decay; schedules, the autopilot's
multiplier and the LR range test scale them instead of overwriting them."""

from __future__ import annotations

import pytest
import torch

from trainwell.config import RunConfig, resolve
from trainwell.errors import ConfigError
from trainwell.models import ModelSpec, build_model
from trainwell.models.config import ModelConfig
from trainwell.optim import build_optimizer
from trainwell.optim.config import OptimConfig


def model(width: int = 128):
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="mlp", depth=2, width=width, parametrization="mup", mup_base_width=32),
                       ModelSpec(input_shape=(64,), num_classes=10))


def groups(opt: torch.optim.Optimizer) -> dict[str, dict]:
    return {g["name"]: g for g in opt.param_groups}


def test_adamw_groups() -> None:
    g = groups(build_optimizer(OptimConfig(name="adamw", lr=1e-2, eps=1e-8, weight_decay=0.1), model()))
    assert set(g) == {"decay/input", "decay/hidden", "decay/output", "no_decay/input", "no_decay/fixed"}
    assert g["decay/hidden"]["lr"] == pytest.approx(1e-2 / 4)
    assert g["decay/input"]["lr"] == g["decay/output"]["lr"] == g["no_decay/fixed"]["lr"] == 1e-2
    # decay per step, lr * weight_decay, is the same in every group
    for name in ("decay/input", "decay/hidden", "decay/output"):
        assert g[name]["lr"] * g[name]["weight_decay"] == pytest.approx(1e-3)
    assert g["decay/hidden"]["eps"] == g["no_decay/input"]["eps"] == pytest.approx(1e-8 / 4)
    assert g["no_decay/fixed"]["eps"] == 1e-8  # the readout bias: nothing grows
    assert g["decay/hidden"]["initial_lr"] == g["decay/hidden"]["lr"]
    assert g["decay/hidden"]["mup_role"] == "hidden"


def test_sgd_groups() -> None:
    g = groups(build_optimizer(OptimConfig(name="sgd", lr=0.1, weight_decay=0.0), model()))
    assert g["decay/hidden"]["lr"] == pytest.approx(0.1)  # fan_out / fan_in = 1
    assert g["decay/input"]["lr"] == g["decay/output"]["lr"] == pytest.approx(0.4)
    assert g["no_decay/input"]["lr"] == pytest.approx(0.4) and g["no_decay/fixed"]["lr"] == 0.1
    assert "eps" not in g["decay/hidden"] or g["decay/hidden"].get("eps") is None


def test_unsupported_optimizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="learning-rate rules for optim.name in"):
        resolve({"task": {"name": "digits"}, "model": {"parametrization": "mup"}, "optim": {"name": "muon"}})
    with pytest.raises(ConfigError, match="got 'muon'"):
        build_optimizer(OptimConfig(name="muon"), model())


def test_every_parameter_is_in_exactly_one_group() -> None:
    m = model()
    opt = build_optimizer(OptimConfig(), m)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters()) and len(set(ids)) == len(ids)


def _state(cfg: RunConfig):
    from trainwell.tasks import build_task
    from trainwell.train.flight import build_state

    return build_state(cfg, build_task(cfg), torch.device("cpu"))


def test_schedule_and_autopilot_multiplier_scale_each_group() -> None:
    """apply_update sets lr = initial_lr * schedule * lr_mult per group: the muP ratios hold
    through warmup, decay and after a rollback halves the rate."""
    from trainwell.train.step import apply_update

    cfg = resolve({"task": {"name": "digits"}, "train": {"steps": 20}, "schedule": {"warmup_steps": 5},
                   "model": {"parametrization": "mup", "width": 128, "mup_base_width": 32}})
    st = _state(cfg)
    init = {g["name"]: g["initial_lr"] for g in st.optimizer.param_groups}
    assert init["decay/hidden"] == pytest.approx(init["decay/input"] / 4)
    for step in range(12):
        if step == 7:
            st.lr_mult = 0.5  # what the autopilot does after a rollback
        factor = st.lr_factor()
        for p in st.model.parameters():
            p.grad = torch.zeros_like(p)
        apply_update(st, factor)
        for g in st.optimizer.param_groups:
            assert g["lr"] == pytest.approx(init[g["name"]] * factor)
    assert st.lr_mult == 0.5


def test_checkpointed_groups_keep_their_roles() -> None:
    m = model()
    opt = build_optimizer(OptimConfig(), m)
    saved = opt.state_dict()
    assert [g["mup_role"] for g in saved["param_groups"]] == [g["mup_role"] for g in opt.param_groups]
    fresh = build_optimizer(OptimConfig(lr=1.0), model())  # a different base lr: the saved one wins
    fresh.load_state_dict(saved)
    assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in opt.param_groups]
