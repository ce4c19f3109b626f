"""Exponential moving average of the weights (torch.optim.swa_utils), evaluated beside the raw weights."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    if decay <= 0:
        return None
    # use_buffers: BatchNorm running statistics are averaged too, so the EMA model evaluates
    # with statistics that match its weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
