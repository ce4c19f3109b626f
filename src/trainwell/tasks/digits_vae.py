"""digits-vae: a variational autoencoder on scikit-learn's 8x8 digits (pixels / 16 in [0, 1]).

Loss per image (nats): reconstruction = Bernoulli negative log-likelihood of the pixels
(BCE with logits, summed over the 64 pixels), plus the KL divergence of the Gaussian
posterior from the prior; the sum is the negative ELBO (Kingma & Welling 2014), reported
as "nelbo" on the held-out split. Pixels are grey levels, not binary, so (as in DeepOBS's
mnist_vae) BCE is a proxy likelihood: its minimum is the pixels' entropy, not 0.

With ``model.vq = true`` the bottleneck is vector-quantised (van den Oord et al. 2017):
there is no KL term; the loss is reconstruction + the model's vq loss (codebook +
commitment), reported as "loss", with "recon" beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from trainwell.data.arrays import load_digits_arrays
from trainwell.data.tensor_rows import TensorRows
from trainwell.errors import ConfigError, DataError
from trainwell.models import ModelSpec, build_model
from trainwell.tasks.base import LossOutput, MetricSums, Task, TaskSpec
from trainwell.tasks.digits import three_way_split

if TYPE_CHECKING:
    from trainwell.config import RunConfig

PIXEL_MAX = 16.0
"""scikit-learn's digits are 4-bit grey levels 0..16."""


class DigitsVAE(Task):
    """Generative modelling of digits; judged by the held-out negative ELBO (nats per image)."""

    name = "digits-vae"
    metric = "nelbo"
    higher_is_better = False
    unit = "samples"

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        if cfg.model.kind != "vae":
            raise ConfigError(
                f"model.kind = {cfg.model.kind!r} does not fit the {self.name} task; valid: vae"
            )
        if cfg.task.data:
            raise DataError(
                f"task.data = {cfg.task.data!r}: {self.name} trains on scikit-learn's digits "
                "only; leave task.data empty"
            )
        self.vq = cfg.model.vq
        self.metric = "loss" if self.vq else "nelbo"
        images, y = load_digits_arrays()  # (N, 8, 8), (N,)
        # a fixed scale, not data statistics: the Bernoulli likelihood needs targets in [0, 1]
        x = torch.from_numpy((images.reshape(len(images), -1) / PIXEL_MAX).astype(np.float32))
        # same splits as the digits task, stratified so every digit is in each of them
        self.train_idx, self.test_idx, self.heldout_test_idx = three_way_split(y, cfg)
        held = self.heldout_test_idx
        self._train = TensorRows(x[self.train_idx])  # (N_train, 64)
        self._test = TensorRows(x[self.test_idx])  # (N_val, 64)
        self._heldout = TensorRows(x[held]) if len(held) else None  # (N_test, 64)
        self.data_summary = (
            f"scikit-learn digits in [0, 1]: {len(self.train_idx)} train / {len(self.test_idx)} validation"
            + (f" / {len(held)} test" if len(held) else "") + " images of 64 pixels"
        )

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model, ModelSpec(input_shape=(64,)))

    def train_data(self) -> Dataset:
        return self._train

    def eval_data(self) -> Dataset:
        return self._test

    def test_data(self) -> Dataset | None:
        return self._heldout

    def _terms(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(recon (B,), regulariser (B,)) in nats per image: KL, or the vq loss."""
        out = model(x)  # VAEOutput: recon_logits (B, 64), kl (B,), vq_loss (B,)
        recon = F.binary_cross_entropy_with_logits(
            out.recon_logits.float(), x, reduction="none"
        ).sum(dim=1)  # (B,)
        reg = out.vq_loss if self.vq else out.kl
        return recon, reg.float()

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x = batch  # (B, 64) in [0, 1]
        recon, reg = self._terms(model, x)
        per_sample = recon + reg  # (B,)
        count = float(len(x))
        components = {"recon": recon.sum(), "vq" if self.vq else "kl": reg.sum()}
        return LossOutput(per_sample.sum(), count, components, per_sample)

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        x = batch
        recon, reg = self._terms(model, x)
        count = float(len(x))
        out = {self.metric: ((recon + reg).sum(), count), "recon": (recon.sum(), count)}
        if not self.vq:
            out["kl"] = (reg.sum(), count)
        return out


DEFAULTS: dict[str, Any] = {
    # the same ~20% held out as the digits task
    "task": {"val_fraction": 0.2},
    # a 2-layer encoder/decoder of 256 units and a 16-d latent: plenty for 64 pixels
    "model": {"kind": "vae", "depth": 2, "width": 256, "latent_dim": 16},
    # 1000 steps x 64 = ~45 epochs: the held-out nelbo is ~25.0 nats after 500 steps,
    # ~24.4 after 1000 and ~24.0 after 1500 (diminishing returns)
    "train": {"steps": 1000, "batch_size": 64, "eval_every": 200},
    "optim": {"lr": 2e-3},
    "schedule": {"warmup_steps": 50},
}

SPEC = TaskSpec(
    name="digits-vae",
    help="variational autoencoder on scikit-learn's 8x8 digits; metric: negative ELBO (nats per image)",
    build=lambda cfg: DigitsVAE(cfg),
    defaults=DEFAULTS,
)
