"""digits: classify scikit-learn's 8x8 handwritten digits (1797 images, no download).

A deterministic stratified hold-out (``task.val_fraction``, 20% by default) is the
validation split (what ``eval/*`` reports). With ``task.test_fraction`` > 0 a second
stratified hold-out of that share of the images, taken from the training side with its own
fixed seed, is the test split (``test_data``): validation stays the same images whether or
not there is one. Inputs are centred per pixel and scaled by one global std, both from the
training split only, and optionally ZCA-whitened (``task.whiten``) with training statistics.
``task.data`` may name an .npz with arrays x (N, ...) and y (N,) integer labels instead;
it gets the same split and preprocessing, and num_classes = y.max() + 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from trainwell.data.arrays import load_digits_arrays, load_npz_classification
from trainwell.data.preprocess import Standardizer
from trainwell.data.split import split_off_test, stratified_split
from trainwell.data.tensor_rows import TensorRows
from trainwell.errors import ConfigError, DataError
from trainwell.models import ModelSpec, build_model
from trainwell.tasks.base import LossOutput, MetricSums, Task, TaskSpec

if TYPE_CHECKING:
    from trainwell.config import RunConfig

SPLIT_SEED = 0
"""Seed of the held-out (validation) split. Fixed, not the run's seed: every run is judged
on the same images, so runs with different seeds stay comparable."""
TEST_SPLIT_SEED = 1
"""Seed of the test split (``task.test_fraction``), fixed for the same reason."""

CONV_KINDS = ("cnn", "resnet")
KINDS = ("mlp", *CONV_KINDS)


class Digits(Task):
    """Image classification with cross-entropy; judged by held-out accuracy."""

    name = "digits"
    metric = "accuracy"
    higher_is_better = True
    unit = "samples"

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        kind = cfg.model.kind
        if kind not in KINDS:
            raise ConfigError(
                f"model.kind = {kind!r} does not fit the {self.name} task (a classifier); "
                f"valid: {', '.join(KINDS)}"
            )
        if cfg.task.data:
            x, y = load_npz_classification(Path(cfg.task.data).expanduser())
            source = f"{cfg.task.data}"
        else:
            x, y = load_digits_arrays()  # (N, 8, 8), (N,)
            source = "scikit-learn digits"
        self.num_classes = int(y.max()) + 1
        if self.num_classes < 2:
            raise DataError(f"task.data = {cfg.task.data!r}: y holds a single class (0); need >= 2")
        self.input_shape = _input_shape(x.shape[1:], kind)
        self.train_idx, self.test_idx, self.heldout_test_idx = three_way_split(y, cfg)
        flat = x.reshape(len(x), -1)  # (N, D)
        self.standardizer = Standardizer.fit(flat[self.train_idx], whiten=cfg.task.whiten)
        inputs = torch.from_numpy(self.standardizer(flat)).view(len(x), *self.input_shape)
        labels = torch.from_numpy(y)
        self._train = TensorRows(inputs[self.train_idx], labels[self.train_idx])
        self._test = TensorRows(inputs[self.test_idx], labels[self.test_idx])
        held = self.heldout_test_idx
        self._heldout = TensorRows(inputs[held], labels[held]) if len(held) else None
        self.data_summary = (
            f"{source}: {len(self.train_idx)} train / {len(self.test_idx)} validation"
            + (f" / {len(held)} test" if len(held) else "")
            + f" samples, {self.num_classes} classes, input {tuple(self.input_shape)}"
        )

    def build_model(self) -> nn.Module:
        spec = ModelSpec(input_shape=self.input_shape, num_classes=self.num_classes)
        return build_model(self.cfg.model, spec)

    def train_data(self) -> Dataset:
        return self._train

    def eval_data(self) -> Dataset:
        return self._test

    def test_data(self) -> Dataset | None:
        return self._heldout

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch  # (B, *input_shape) float32, (B,) int64
        logits = model(x).float()  # (B, num_classes)
        per_sample = F.cross_entropy(logits, y, reduction="none")  # (B,)
        count = float(len(y))
        return LossOutput(per_sample.sum(), count, {}, per_sample, logits)

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        x, y = batch
        logits = model(x).float()  # (B, num_classes)
        count = float(len(y))
        ce = F.cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(dim=-1) == y).sum().float()
        return {"accuracy": (correct, count), "loss": (ce, count)}


def three_way_split(y: np.ndarray, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indices, sorted and disjoint: validation is the stratified
    ``task.val_fraction`` hold-out (the same with or without a test split), test a stratified
    ``task.test_fraction`` of all samples taken from what is left (empty at 0)."""
    val_fraction, test_fraction = cfg.task.val_fraction, cfg.task.test_fraction
    if val_fraction + test_fraction >= 0.9:
        raise ConfigError(
            f"task.val_fraction + task.test_fraction = {val_fraction + test_fraction:g} leaves "
            "under 10% of the samples to train on; lower one of them"
        )
    train, val = stratified_split(y, val_fraction, SPLIT_SEED)
    train, test = split_off_test(y, train, round(test_fraction * len(y)), TEST_SPLIT_SEED)
    return train, val, test


def _input_shape(sample_shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """(D,) for an mlp; (C, H, W) channels-first for conv kinds ((H, W) gets C = 1)."""
    if kind not in CONV_KINDS:
        return (int(np.prod(sample_shape)),)
    if len(sample_shape) == 2:
        return (1, *sample_shape)
    if len(sample_shape) == 3:
        return tuple(sample_shape)
    raise DataError(
        f"model.kind = {kind!r} needs images: x of shape (N, H, W) or (N, C, H, W) "
        f"(channels first) in task.data, got samples of shape {tuple(sample_shape)}; "
        "use model.kind = 'mlp' for flat features"
    )


DEFAULTS: dict[str, Any] = {
    # ~20% held out: 360 test images, so one misclassified image moves accuracy by 0.3%
    "task": {"val_fraction": 0.2},
    # two hidden layers of 128 reach ~97% test accuracy in seconds on a CPU
    "model": {"kind": "mlp", "depth": 2, "width": 128},
    # 400 steps x 64 = ~18 epochs of the 1437 training images (test loss is lowest around
    # there; longer runs start to overfit)
    "train": {"steps": 400, "batch_size": 64, "eval_every": 100},
    # a small MLP tolerates a higher peak LR than the 1e-3 default
    "optim": {"lr": 3e-3},
    "schedule": {"warmup_steps": 20},
}

SPEC = TaskSpec(
    name="digits",
    help="classify scikit-learn's 8x8 handwritten digits (or an .npz in task.data); metric: accuracy",
    build=lambda cfg: Digits(cfg),
    defaults=DEFAULTS,
)
