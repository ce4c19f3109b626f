"""A user task with a model that is not one of trainwell's: each 8x8 digit read as 8 rows
of 8 pixels, an input projection plus a learned position table, a mixing matrix held as a
bare ``nn.Parameter``, a LayerNorm, and a readout that subclasses ``nn.Linear`` with its
own forward (mean over rows, then the matmul). ``make_task`` puts it in muP with
``trainwell.mup.parametrize``; ``make_sp_task`` does not (the coordinate check must catch it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainwell.config import RunConfig
from trainwell.mup import parametrize
from trainwell.tasks.digits import Digits


class PooledReadout(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:  # (B, 8, W) -> (B, classes)
        return F.linear(x.mean(dim=1), self.weight, self.bias)


class RowMixer(nn.Module):
    def __init__(self, width: int, classes: int = 10) -> None:
        super().__init__()
        self.rows = nn.Linear(8, width)
        self.pos = nn.Embedding(8, width)
        self.mix = nn.Parameter(torch.randn(width, width) / width**0.5)  # (fan_out, fan_in)
        self.norm = nn.LayerNorm(width)
        self.hidden = nn.Linear(width, width)
        self.head = PooledReadout(width, classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 1, 8, 8) or (B, 64) -> (B, classes)
        x = x.reshape(len(x), 8, 8)
        h = self.rows(x) + self.pos.weight  # (B, 8, W)
        h = torch.relu(h @ self.mix.T)
        h = torch.relu(self.hidden(self.norm(h)))
        return self.head(h)


class RowMixerTask(Digits):
    name = "row-mixer"

    def __init__(self, cfg: RunConfig, mup: bool) -> None:
        super().__init__(cfg)
        self.cfg, self.mup = cfg, mup

    def build_model(self) -> nn.Module:
        width, base = self.cfg.model.width, self.cfg.model.mup_base_width
        if self.mup:
            return parametrize(RowMixer, width, base)
        return RowMixer(width)


def _digits(config: RunConfig) -> RunConfig:
    raw = config.to_dict()
    raw["task"] = {**raw["task"], "name": "digits"}  # its data; the model is RowMixer whatever model.kind says
    raw["model"] = {**raw["model"], "kind": "mlp"}
    return RunConfig.model_validate(raw)


def make_task(config: RunConfig) -> RowMixerTask:
    return RowMixerTask(_digits(config), mup=True)


def make_sp_task(config: RunConfig) -> RowMixerTask:
    return RowMixerTask(_digits(config), mup=False)
