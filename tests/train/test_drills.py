from __future__ import annotations

import math
from collections import namedtuple

import pytest
import torch

from trainwell.drills import FaultsConfig, apply_to_batch, force_overflow, lr_factor


def dict_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(6, 3, generator=g),  # (B, D) float input
        "mask": torch.ones(6, 3),  # another float input
        "tokens": torch.randint(0, 9, (6, 4), generator=g),  # integer input: never touched
        "y": torch.tensor([0, 1, 2, 3, 1, 2]),  # (B,) class labels
    }


def test_defaults_are_no_faults():
    cfg = FaultsConfig()
    assert not cfg.any
    batch = dict_batch()
    assert apply_to_batch(cfg, 1, batch, torch.arange(6)) is batch
    assert lr_factor(cfg, 1) == 1.0 and not force_overflow(cfg, 1)


def test_nan_and_scale_hit_exactly_the_poison_rows_of_float_inputs_at_their_iteration():
    cfg = FaultsConfig(nan_batch_at=[5], scale_batch_at=[6], poison_rows=[1, 4, 99])
    batch = dict_batch()
    snapshot = {k: v.clone() for k, v in batch.items()}
    idx = torch.arange(10, 16)
    assert apply_to_batch(cfg, 4, batch, idx) is batch  # another iteration: untouched

    nan = apply_to_batch(cfg, 5, batch, idx)
    rows_nan = torch.isnan(nan["x"]).any(1)
    assert rows_nan.tolist() == [False, True, False, False, True, False]
    assert torch.isnan(nan["mask"]).any(1).tolist() == rows_nan.tolist()
    assert torch.equal(nan["tokens"], batch["tokens"]) and torch.equal(nan["y"], batch["y"])

    scaled = apply_to_batch(cfg, 6, batch, idx)
    keep = [0, 2, 3, 5]
    assert torch.equal(scaled["x"][keep], batch["x"][keep])
    assert torch.allclose(scaled["x"][[1, 4]], batch["x"][[1, 4]] * 1e4)

    for k, v in batch.items():  # the caller's batch is never modified
        assert torch.equal(v, snapshot[k])


def test_corrupt_labels_by_sample_id_in_dicts_and_tuples():
    cfg = FaultsConfig(corrupt_labels=[12, 15, 777])
    batch = dict_batch()
    idx = torch.arange(10, 16)  # ids 12 and 15 sit at rows 2 and 5
    out = apply_to_batch(cfg, 1, batch, idx)
    changed = (out["y"] != batch["y"]).tolist()
    assert changed == [False, False, True, False, False, True]
    assert set(out["y"].tolist()) <= set(batch["y"].tolist())  # still valid class ids
    assert torch.equal(out["x"], batch["x"])

    x, y = (
        batch["x"],
        torch.tensor([[3, 4, -100], [1, 2, 3], [4, 4, 4], [0, 1, 2], [2, 2, 2], [1, 0, -100]]),
    )
    ox, oy = apply_to_batch(cfg, 1, (x, y), idx)
    assert ox is x
    diff = oy != y
    assert diff[[0, 1, 3, 4]].sum() == 0
    assert diff[2].all() and diff[5, :2].all() and oy[5, 2] == -100  # ignored targets stay ignored
    assert int(oy.max()) <= 4 and int(oy[oy >= 0].min()) >= 0


def test_targets_key_list_and_namedtuple_batches():
    cfg = FaultsConfig(corrupt_labels=[0], scale_batch_at=[2])
    idx = torch.tensor([0, 1])
    out = apply_to_batch(
        cfg,
        1,
        {"input_ids": torch.tensor([[1, 2], [3, 4]]), "targets": torch.tensor([[2, 3], [4, 5]])},
        idx,
    )
    assert (out["targets"][0] != torch.tensor([2, 3])).all() and out["targets"][1].tolist() == [
        4,
        5,
    ]
    Pair = namedtuple("Pair", "x y")
    p = apply_to_batch(cfg, 2, Pair(torch.ones(2, 2), torch.tensor([0.5, 1.5])), idx)
    assert isinstance(p, Pair) and torch.allclose(p.x, torch.full((2, 2), 1e4))
    assert p.y[0] != 0.5 and p.y[1] == 1.5  # float targets moved far off
    lst = apply_to_batch(cfg, 2, [torch.ones(2, 1), torch.tensor([1, 0])], idx)
    assert isinstance(lst, list) and lst[1].tolist() == [0, 0]


def test_lr_burst_window_and_forced_overflow():
    cfg = FaultsConfig(
        lr_burst_at=10, lr_burst_steps=3, lr_burst_factor=50.0, fp16_overflow_at=[4, 7]
    )
    assert [lr_factor(cfg, i) for i in range(9, 15)] == [1.0, 50.0, 50.0, 50.0, 1.0, 1.0]
    assert [i for i in range(10) if force_overflow(cfg, i)] == [4, 7]
    assert cfg.any


def test_faults_section_is_strict():
    with pytest.raises(Exception, match="lr_burst_factor"):
        FaultsConfig(lr_burst_factor=-1)
    with pytest.raises(Exception, match="nan_batch"):
        FaultsConfig(nan_batchs_at=[1])  # type: ignore[call-arg]


def test_a_kill_fault_does_not_fire_again_after_a_resume(monkeypatch):
    """A run directory keeps its config, faults included: a resumed run (or an elastic
    restart) must not die at kill_at again. Were it to fire here, it would SIGKILL pytest."""
    from trainwell import drills as faults_mod

    cfg = FaultsConfig(kill_at=3)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    faults_mod.kill_if_due(cfg, 3, resumed=True)
    faults_mod.kill_if_due(cfg, 2)  # not yet due
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    faults_mod.kill_if_due(cfg, 3)


def test_arm_wraps_the_loader_the_loss_and_the_schedule():
    """The drills reach the step only through the loader, the task's loss and the schedule:
    iteration 2's batch is poisoned, iteration 3's training loss is NaN (evaluation is not),
    iteration 4 runs at 10x the learning rate, and an empty plan changes nothing."""
    from torch import nn

    from trainwell import drills
    from trainwell.data.loader import BatchLoader
    from trainwell.data.sampler import ResumableSampler
    from trainwell.data.tensor_rows import TensorRows
    from trainwell.tasks.base import LossOutput, Task
    from trainwell.train.precision import resolve_precision
    from trainwell.train.state import TrainState

    class Mean(Task):
        def loss(self, model, batch):
            x, _ = batch
            out = model(x).squeeze(1)
            return LossOutput(out.sum(), float(len(x)))

    data = TensorRows(torch.ones(16, 3), torch.zeros(16))
    model = nn.Linear(3, 1)
    cpu = torch.device("cpu")
    loader = BatchLoader(data, ResumableSampler(16, seed=0), list, cpu, 4, 1)
    st = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda s: 1.0, 0.1,
                    resolve_precision("fp32", cpu), loader, cpu)
    task = Mean()
    assert drills.arm(FaultsConfig(), st, task) is task and st.loader is loader
    plan = FaultsConfig(scale_batch_at=[2], scale_factor=100.0, poison_rows=[1], nan_loss_at=[3],
                        lr_burst_at=4, lr_burst_factor=10.0)
    task = drills.arm(plan, st, task)
    seen = []
    for it in range(1, 6):
        ((_, (x, _)),) = st.loader.next()
        model.train()
        seen.append((float(x.abs().max()), task.loss(model, (x, None)).sum.item(), st.lr_factor()))
        model.eval()
        assert math.isfinite(float(task.loss(model, (x, None)).sum))  # evaluation is untouched
        st.iteration = it
    assert [m for m, _, _ in seen] == [1.0, 100.0, 1.0, 1.0, 1.0]
    assert [math.isnan(v) for _, v, _ in seen] == [False, False, True, False, False]
    assert [f for _, _, f in seen] == [1.0, 1.0, 1.0, 10.0, 1.0]


def test_a_nan_loss_with_poison_rows_is_those_samples_own():
    """nan_loss_at with poison_rows: the poisoned rows' per-sample losses are NaN, the others
    keep their values (quarantine can find the culprits); without per-sample losses, or
    without rows, the whole batch's loss is NaN."""
    from torch import nn

    from trainwell.drills import DrillTask
    from trainwell.tasks.base import LossOutput, Task

    class PerSample(Task):
        def loss(self, model: nn.Module, batch: torch.Tensor) -> LossOutput:
            per_sample = model(batch).squeeze(1) ** 2  # (B,)
            return LossOutput(per_sample.sum(), float(len(batch)), per_sample=per_sample)

    model, x = nn.Linear(3, 1), torch.randn(5, 3)
    clean = PerSample().loss(model, x).per_sample
    rows = DrillTask(PerSample(), FaultsConfig(nan_loss_at=[2], poison_rows=[1, 3, 9]), lambda: 2, 0).loss(model, x)
    assert math.isnan(rows.sum.item())
    assert torch.isnan(rows.per_sample).tolist() == [False, True, False, True, False]
    assert torch.equal(rows.per_sample[[0, 2, 4]], clean[[0, 2, 4]])
    whole = DrillTask(PerSample(), FaultsConfig(nan_loss_at=[2]), lambda: 2, 0).loss(model, x)
    assert math.isnan(whole.sum.item()) and torch.equal(whole.per_sample, clean)  # the model's fault, not a sample's
    other = DrillTask(PerSample(), FaultsConfig(nan_loss_at=[3], poison_rows=[1]), lambda: 2, 0).loss(model, x)
    assert torch.equal(other.per_sample, clean) and math.isfinite(other.sum.item())
