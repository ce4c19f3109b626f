"""The distillation term against a brute-force reference, and its gradient scale."""

from __future__ import annotations

import math

import pytest
import torch

from trainwell.distill.loss import kd_per_target, per_sample_sums, top1_agreement


def brute_kd(student: torch.Tensor, teacher: torch.Tensor, t: float) -> list[float]:
    """T^2 * sum_c p_t(c) log(p_t(c) / p_s(c)) per row, with Python loops over classes."""
    out = []
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        zs = [v / t for v in s_row]
        zt = [v / t for v in t_row]
        ls = math.log(sum(math.exp(v) for v in zs))
        lt = math.log(sum(math.exp(v) for v in zt))
        kl = sum(math.exp(b - lt) * ((b - lt) - (a - ls)) for a, b in zip(zs, zt, strict=True))
        out.append(t * t * kl)
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.5, 4.0])
def test_matches_the_brute_force_reference(temperature):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    got = kd_per_target(s, t, temperature)
    assert got.shape == (6,)
    assert got.tolist() == pytest.approx(brute_kd(s, t, temperature), rel=1e-5, abs=1e-6)


def test_zero_for_equal_logits_and_positive_otherwise():
    s = torch.randn(4, 3, 7)
    assert kd_per_target(s, s.clone(), 2.0).abs().max().item() < 1e-6
    assert (kd_per_target(s, s.flip(-1), 2.0) > 0).all()


def test_gradient_is_t_times_the_probability_gap():
    """d/dz_s of T^2 KL(p_t^T || p_s^T) = T (p_s^T - p_t^T): the T^2 factor (Hinton et al. 2015)
    undoes the 1/T^2 the softened softmax puts on the gradient."""
    t = 3.0
    s = torch.randn(2, 5, requires_grad=True)
    teacher = torch.randn(2, 5)
    kd_per_target(s, teacher, t).sum().backward()
    expected = t * (torch.softmax(s.detach() / t, -1) - torch.softmax(teacher / t, -1))
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_classes_the_teacher_rules_out_add_nothing():
    s = torch.tensor([[0.0, 1.0, 2.0]])
    t = torch.tensor([[0.0, float("-inf"), 1.0]])
    got = kd_per_target(s, t, 1.0)
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(brute_kd(s[:, [0, 2]] , t[:, [0, 2]], 1.0)[0]
                                       + math.log(sum(math.exp(v) for v in (0.0, 1.0, 2.0)))
                                       - math.log(sum(math.exp(v) for v in (0.0, 2.0))), rel=1e-5)


def test_top1_agreement_counts_rows_with_the_same_argmax():
    s = torch.tensor([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    t = torch.tensor([[0.0, 5.0], [0.0, 1.0], [1.0, 2.0]])
    assert top1_agreement(s, t).item() == 2.0


def test_per_sample_sums_by_leading_dimension():
    rows = torch.arange(6.0).view(2, 3)  # (B, T)
    assert per_sample_sums(rows, 2).tolist() == [3.0, 12.0]
    assert per_sample_sums(torch.tensor([1.0, 2.0]), 2).tolist() == [1.0, 2.0]  # (B,)
    assert per_sample_sums(torch.arange(5.0), 2) is None  # flattened targets of unknown samples
