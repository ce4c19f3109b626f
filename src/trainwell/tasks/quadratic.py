"""quadratic: DeepOBS's ``quadratic_deep`` (Schneider et al. 2019), a 100-d noisy quadratic.

Per-sample loss 0.5 (theta - x)^T H (theta - x) with H = Q diag(lambda) Q^T: Q a fixed random
rotation, 90% of the eigenvalues ~ U(0, 1) and 10% ~ U(30, 60), the spectrum reported for
deep networks (Chaudhari et al. 2017, "Entropy-SGD"): a few steep directions, many flat ones.
The "data" x ~ N(0, 0.6^2 I) are noise samples: 1000 fixed training samples, a separate
draw of 1000 for validation (``eval/*``) and, as DeepOBS's test set, another separate draw
of 1000 for the test split (``test_data``). The optimum of the expected loss is theta = 0,
where the held-out loss is about 0.5 * 0.36 * tr(H) (~89): no optimizer can go below that
floor.

What DeepOBS does and what we chose: DeepOBS draws the eigenvalues, the rotation (the
Diaconis-Shahshahani subgroup algorithm) and the data with numpy's legacy RandomState
(seeds 42 / 42 / 43), noise std 0.6, and initialises theta to ones. We keep the sizes, the
spectrum, the noise std and theta = ones (deterministic, no randomness at all), but draw with
numpy's Generator and a QR-based Haar rotation (Mezzadri 2007), so the numbers are not
bit-identical to DeepOBS: the problem is the same, the instance differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from trainwell.data.tensor_rows import TensorRows
from trainwell.errors import ConfigError, DataError
from trainwell.tasks.base import LossOutput, Task, TaskSpec

if TYPE_CHECKING:
    from trainwell.config import RunConfig

DIM = 100
NOISE_STD = 0.6
"""DeepOBS's noise level: the spread of the samples around the optimum."""
N_TRAIN = 1000
N_TEST = 1000
"""Samples of each held-out draw (validation, test)."""
HESSIAN_SEED, TRAIN_SEED, TEST_SEED, HELDOUT_TEST_SEED = 42, 43, 44, 45
"""Fixed seeds, not the run's seed: every run optimises the same problem instance.
TEST_SEED draws the validation samples (named before there was a test split, and kept so
that validation stays the same draw); HELDOUT_TEST_SEED the test split's."""


def deep_spectrum_hessian(dim: int = DIM, seed: int = HESSIAN_SEED) -> np.ndarray:
    """(dim, dim) float64 symmetric positive-definite H = Q diag(lambda) Q^T."""
    rng = np.random.default_rng(seed)
    n_big = dim // 10
    lam = np.concatenate([rng.uniform(0.0, 1.0, dim - n_big), rng.uniform(30.0, 60.0, n_big)])
    # Haar-random rotation: QR of a Gaussian matrix, with R's diagonal signs moved into Q
    # (Mezzadri 2007, "How to generate random matrices from the classical compact groups")
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    return (q * lam) @ q.T


class NoisyQuadratic(nn.Module):
    """One parameter theta (D,); forward(x (B, D)) -> per-sample loss (B,)."""

    def __init__(self, hessian: Tensor) -> None:
        super().__init__()
        # ones, as DeepOBS: a deterministic start at distance sqrt(D) from the optimum
        self.theta = nn.Parameter(torch.ones(hessian.shape[0]))
        # rebuilt deterministically by the task, so it need not be in checkpoints
        self.register_buffer("hessian", hessian, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        d = self.theta - x  # (B, D)
        return 0.5 * ((d @ self.hessian) * d).sum(dim=1)  # (B,)


class Quadratic(Task):
    """A benchmark problem with a known structure; judged by the held-out loss."""

    name = "quadratic"
    metric = "loss"
    higher_is_better = False
    unit = "samples"

    def __init__(self, cfg: RunConfig) -> None:
        if cfg.model.kind != "quadratic":
            raise ConfigError(
                f"model.kind = {cfg.model.kind!r} does not fit the quadratic task, which owns "
                "its model; valid: quadratic"
            )
        if cfg.task.data:
            raise DataError(
                f"task.data = {cfg.task.data!r}: the quadratic task generates its own data; "
                "leave task.data empty"
            )
        self.hessian = torch.from_numpy(deep_spectrum_hessian().astype(np.float32))  # (D, D)
        self._train = TensorRows(_noise(N_TRAIN, TRAIN_SEED))  # (N_train, D)
        self._test = TensorRows(_noise(N_TEST, TEST_SEED))  # (N_val, D), the validation draw
        self._heldout = TensorRows(_noise(N_TEST, HELDOUT_TEST_SEED))  # (N_test, D)
        self.data_summary = (f"noisy quadratic: D={DIM}, {N_TRAIN} train / {N_TEST} validation / "
                             f"{N_TEST} test samples")

    def build_model(self) -> nn.Module:
        return NoisyQuadratic(self.hessian.clone())

    def train_data(self) -> Dataset:
        return self._train

    def eval_data(self) -> Dataset:
        return self._test

    def test_data(self) -> Dataset:
        return self._heldout

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x = batch  # (B, D)
        per_sample = model(x).float()  # (B,)
        count = float(len(x))
        return LossOutput(per_sample.sum(), count, {}, per_sample)


def _noise(n: int, seed: int) -> Tensor:
    """(n, D) float32 samples of N(0, NOISE_STD^2 I)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy((NOISE_STD * rng.standard_normal((n, DIM))).astype(np.float32))


DEFAULTS: dict[str, Any] = {
    "model": {"kind": "quadratic"},
    # DeepOBS's batch size and budget: 800 steps x 128 = ~100 epochs of the 1000 samples
    "train": {"steps": 800, "batch_size": 128, "eval_every": 100},
    # theta starts ~1 from the optimum in every coordinate and Adam moves each by about lr
    # per step: 0.1 gets there in tens of steps, then the cosine decay averages out the
    # noise (0.03 and 0.3 end within 20% of the same loss). No weight decay: DeepOBS adds
    # no regulariser, and decay would pull theta off the optimum.
    "optim": {"lr": 0.1, "weight_decay": 0.0},
    "schedule": {"warmup_steps": 20},
}

SPEC = TaskSpec(
    name="quadratic",
    help="DeepOBS quadratic_deep: 100-d noisy quadratic with a deep-learning eigenspectrum; metric: loss",
    build=lambda cfg: Quadratic(cfg),
    defaults=DEFAULTS,
)
