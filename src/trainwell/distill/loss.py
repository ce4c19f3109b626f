"""The distillation term and the agreement of a student with its teacher, per target.

Knowledge distillation (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural
Network"): the student matches the teacher's softened distribution softmax(z_t / T). The
gradient of the softened term with respect to the student's logits scales as 1/T^2, so the
paper multiplies it by T^2 to keep its weight against the hard-label loss independent of T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def kd_per_target(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """(...,) T^2 * KL(softmax(teacher / T) || softmax(student / T)) of each row, in nats.

    ``student`` and ``teacher`` are (..., C) logits of the same targets; computed in fp32
    (the log-sum-exp of bf16 logits loses the small differences the KL is made of). Classes
    the teacher gives probability exactly 0 (a logit of -inf) add 0, as 0 * log 0 does."""
    t = temperature
    log_s = F.log_softmax(student.float() / t, dim=-1)  # (..., C)
    log_t = F.log_softmax(teacher.float() / t, dim=-1)  # (..., C)
    p_t = log_t.exp()
    terms = torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t))  # (..., C)
    return terms.sum(dim=-1) * (t * t)


def top1_agreement(student: Tensor, teacher: Tensor) -> Tensor:
    """Scalar: how many rows have the same most likely class under student and teacher."""
    return (student.argmax(dim=-1) == teacher.argmax(dim=-1)).sum().float()


def per_sample_sums(rows: Tensor, batch_size: int) -> Tensor | None:
    """(B,) the sum of a per-target quantity over each sample's targets when the rows'
    leading dimension is the batch's samples ((B,) or (B, T) rows), else None (the task gave
    its targets flattened, so they cannot be told apart by sample)."""
    if rows.ndim == 0 or rows.shape[0] != batch_size:
        return None
    return rows.reshape(batch_size, -1).sum(dim=1)
