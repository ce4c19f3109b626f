"""Every registered task through the same checks (the Task contract), and name resolution."""

from __future__ import annotations

import pytest
import torch

from trainwell.config import RunConfig, resolve
from trainwell.errors import ConfigError
from trainwell.tasks import TASKS, LossOutput, Task, build_task
from trainwell.tasks.config import TaskConfig

SMALL = {
    # keep the contract checks fast: tiny models, short windows
    "bytes-lm": {"task": {"seq_len": 16}, "model": {"depth": 1, "width": 16, "heads": 2}},
    "digits": {"model": {"width": 16}},
    "digits-vae": {"model": {"width": 16}},
    "quadratic": {},
}


def test_the_built_in_tasks_are_registered_with_help():
    assert TASKS.names() == sorted(SMALL)
    for name in TASKS:
        assert TASKS.help(name) and TASKS.get(name).name == name


@pytest.mark.parametrize("name", sorted(SMALL))
def test_defaults_are_valid_config(name):
    cfg = resolve({"task": {"name": name}})
    assert isinstance(cfg, RunConfig) and cfg.task.name == name
    for section, values in TASKS.get(name).defaults.items():
        for key, value in values.items():
            got = getattr(getattr(cfg, section), key)
            assert got == (tuple(value) if isinstance(got, tuple) else value), f"{section}.{key}"


def test_user_values_win_over_task_defaults():
    cfg = resolve({"task": {"name": "digits"}, "optim": {"lr": 0.5}})
    assert cfg.optim.lr == 0.5 and cfg.model.kind == "mlp"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_contract(name):
    cfg = resolve({"task": {"name": name}, **SMALL[name]})
    task = build_task(cfg)
    assert isinstance(task, Task) and task.name == name
    assert task.unit in ("samples", "tokens")
    torch.manual_seed(0)
    model = task.build_model()
    for data in (task.train_data(), task.eval_data()):
        assert data is not None and len(data) > 0
        idx = torch.tensor([0, len(data) - 1, 1])
        fast = data.get_batch(idx)
        slow = task.collate([data[int(i)] for i in idx])
        flat_fast = fast if isinstance(fast, tuple) else (fast,)
        flat_slow = tuple(slow) if isinstance(slow, list) else (slow,)
        assert all(torch.equal(a, b) for a, b in zip(flat_fast, flat_slow, strict=True))
        out = task.loss(model, fast)
        assert isinstance(out, LossOutput)
        assert out.sum.shape == () and out.sum.isfinite()
        assert torch.as_tensor(out.count).shape == () and float(out.count) > 0
        assert out.per_sample is not None and out.per_sample.shape == (3,)
        torch.testing.assert_close(out.per_sample.sum(), out.sum)
        comps = sum(out.components.values()) if out.components else out.sum
        torch.testing.assert_close(comps, out.sum)
        metrics = task.metrics(model, fast)
        assert task.metric in metrics
        for s, c in metrics.values():
            assert s.shape == () and torch.as_tensor(c).shape == () and float(c) > 0
    (out.sum / out.count).backward()
    assert any(p.grad is not None for p in model.parameters())


def test_unknown_name_suggests_and_lists_the_tasks():
    cfg = RunConfig(task=TaskConfig(name="digit"))  # built directly: no registry check yet
    with pytest.raises(
        ConfigError,
        match=r"task\.name: unknown task 'digit' \(did you mean 'digits'\?\); valid: bytes-lm, digits, digits-vae, quadratic, or a user entry point",
    ):
        build_task(cfg)
