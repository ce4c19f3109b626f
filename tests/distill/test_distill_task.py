"""DistillTask: the loss mixture, its components, a frozen teacher, the agreement metrics."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trainwell.config import resolve
from trainwell.distill import DistillTask, check_fit, kd_per_target
from trainwell.errors import TaskError
from trainwell.tasks import LossOutput, Task, build_plain_task

TINY = {"task": {"name": "digits"}, "model": {"kind": "mlp", "depth": 1, "width": 16}}


@pytest.fixture(scope="module")
def digits() -> Task:
    return build_plain_task(resolve(TINY))


def batch_of(task: Task, n: int = 8):
    data = task.train_data()
    return data.get_batch(torch.arange(n))


def pair(task: Task, seed_s: int = 0, seed_t: int = 1) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed_s)
    student = task.build_model()
    torch.manual_seed(seed_t)
    return student, task.build_model()


@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.9, 4.0), (0.0, 2.0), (1.0, 2.0)])
def test_loss_is_the_weighted_mixture(digits, alpha, temperature):
    student, teacher = pair(digits)
    task = DistillTask(digits, teacher, alpha=alpha, temperature=temperature)
    batch = batch_of(digits)
    out = task.loss(student, batch)
    plain = digits.loss(student, batch)
    kd = kd_per_target(student(batch[0]), teacher(batch[0]), temperature).sum()
    expected = (1 - alpha) * plain.sum + alpha * kd
    assert out.sum.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.count == plain.count
    assert out.components["task"].item() == pytest.approx(plain.sum.item(), rel=1e-6)
    assert out.components["kd"].item() == pytest.approx(kd.item(), rel=1e-6)
    assert out.per_sample.sum().item() == pytest.approx(out.sum.item(), rel=1e-5)


def test_alpha_zero_trains_exactly_like_the_task(digits):
    student, teacher = pair(digits)
    batch = batch_of(digits)
    twin = copy.deepcopy(student)
    DistillTask(digits, teacher, alpha=0.0).loss(student, batch).sum.backward()
    digits.loss(twin, batch).sum.backward()
    for a, b in zip(student.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_teacher_is_frozen_and_stays_in_eval_mode(digits):
    student, teacher = pair(digits)
    before = copy.deepcopy(teacher.state_dict())
    task = DistillTask(digits, teacher, alpha=0.7)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    teacher.train()  # e.g. a user's model.train() over every module
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    for _ in range(3):
        task.loss(student, batch_of(digits)).sum.backward()
        opt.step()
        opt.zero_grad()
    assert not teacher.training
    assert all(p.grad is None for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_agreement_metrics_of_a_copy_of_the_teacher(digits):
    student, teacher = pair(digits)
    task = DistillTask(digits, copy.deepcopy(student))
    batch = batch_of(digits, 16)
    m = task.metrics(student, batch)
    top1, n = m["teacher_top1"]
    assert (top1.item(), n) == (16.0, 16.0)
    assert abs(m["teacher_kl"][0].item()) < 1e-5
    assert m["teacher_accuracy"][0].item() == m["accuracy"][0].item()


def test_agreement_metrics_of_a_different_teacher(digits):
    student, teacher = pair(digits)
    task = DistillTask(digits, teacher)
    batch = batch_of(digits, 16)
    m = task.metrics(student, batch)
    s, t = student(batch[0]), teacher(batch[0])
    assert m["teacher_top1"][0].item() == (s.argmax(-1) == t.argmax(-1)).sum().item()
    assert m["teacher_kl"][0].item() == pytest.approx(kd_per_target(s, t, 1.0).sum().item(), rel=1e-5)
    assert set(m) >= {"accuracy", "loss", "teacher_accuracy"}


class NoLogits(Task):
    name = "no-logits"

    def __init__(self, inner: Task) -> None:
        self.inner = inner

    def build_model(self) -> nn.Module:
        return self.inner.build_model()

    def train_data(self):
        return self.inner.train_data()

    def loss(self, model, batch) -> LossOutput:
        out = self.inner.loss(model, batch)
        return LossOutput(out.sum, out.count)


def test_a_task_without_logits_is_refused_with_the_fix(digits):
    student, teacher = pair(digits)
    task = DistillTask(NoLogits(digits), teacher)
    with pytest.raises(TaskError, match=r"gives no logits.*LossOutput\(\.\.\., logits=\.\.\.\)"):
        task.loss(student, batch_of(digits))
    assert check_fit(task) and "gives no logits" in check_fit(task)[0]


def test_a_teacher_over_other_classes_is_refused(digits):
    student, _ = pair(digits)
    teacher = nn.Linear(64, 7)  # 7 classes, the student 10
    task = DistillTask(digits, teacher)
    with pytest.raises(TaskError, match=r"cannot score the student.s batch: IndexError"):
        task.loss(student, batch_of(digits))
    problems = check_fit(task)
    assert len(problems) == 1 and "shape (2, 7)" in problems[0]  # the probe batch holds labels < 7


def test_any_module_can_teach(digits):
    """From Python the teacher is any nn.Module reading the student's batches."""
    student, _ = pair(digits)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    task = DistillTask(digits, teacher, alpha=1.0, temperature=2.0)
    assert check_fit(task) == []
    out = task.loss(student, batch_of(digits))
    assert torch.isfinite(out.sum) and out.components["kd"].item() > 0


def test_bad_weights_are_refused(digits):
    with pytest.raises(TaskError, match="alpha"):
        DistillTask(digits, nn.Linear(64, 10), alpha=1.5)
    with pytest.raises(TaskError, match="temperature"):
        DistillTask(digits, nn.Linear(64, 10), temperature=0.0)


def test_bytes_lm_per_sample_and_per_token_rows(tmp_path):
    (tmp_path / "a.txt").write_text("def f(x):\n    return x + 1\n" * 40)
    (tmp_path / "b.txt").write_text("class A:\n    pass\n" * 40)
    raw = {"task": {"name": "bytes-lm", "data": str(tmp_path), "seq_len": 16, "val_fraction": 0.5},
           "model": {"depth": 1, "width": 16, "heads": 2}}
    lm = build_plain_task(resolve(raw))
    student, teacher = pair(lm)
    task = DistillTask(lm, teacher, alpha=0.5, temperature=2.0)
    batch = lm.train_data().get_batch(torch.arange(4))
    out = task.loss(student, batch)
    assert out.logits.shape == (4, 16, 256) and out.count == 64.0
    assert out.per_sample.shape == (4,)
    assert out.per_sample.sum().item() == pytest.approx(out.sum.item(), rel=1e-5)
    m = task.metrics(student, batch)
    assert m["teacher_top1"][1] == 64.0 and "teacher_bpb" in m


def test_a_teacher_with_a_shorter_context_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("def f(x):\n    return x + 1\n" * 60)
    (tmp_path / "b.txt").write_text("class A:\n    pass\n" * 60)

    def lm(seq_len: int) -> Task:
        return build_plain_task(resolve({"task": {"name": "bytes-lm", "data": str(tmp_path), "seq_len": seq_len,
                                                  "val_fraction": 0.5},
                                         "model": {"depth": 1, "width": 16, "heads": 2}}))

    short, long = lm(16), lm(32)
    problems = check_fit(DistillTask(long, short.build_model()), short)
    assert len(problems) == 1 and "cannot score the student's batch" in problems[0] and "context of 16" in problems[0]
    assert check_fit(DistillTask(short, long.build_model()), long) == []  # a longer context reads shorter windows
