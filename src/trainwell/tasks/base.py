"""The Task contract: data + model + loss + metrics.

The loss is what we optimise; metrics are what we judge by (Dieleman, MLSS 2023: "the metric is
something different to the loss function"). Built-in tasks and user tasks
(``task.name = "my_pkg.my_mod:make_task"``) are the same type.

Batches: the loader draws sample indices ``idx`` (a LongTensor), builds the batch with
``dataset.get_batch(idx)`` when the dataset has that fast path, else with
``task.collate([dataset[i] for i in idx])``, and moves it to the device. ``idx`` travels
beside the batch (for quarantine), not inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate


@dataclass
class LossOutput:
    """What ``Task.loss`` returns for one (micro-)batch.

    ``sum`` is the SUM over this batch's targets of the loss to optimise (components
    included, already weighted). The step divides by the total ``count`` across all
    micro-batches, so accumulation is exact even with unequal micro-batch sizes or padding
    (the HF 2024 gradient-accumulation bug was a mean of means).
    """

    sum: Tensor
    """scalar: sum over targets of the total loss."""
    count: Tensor | float
    """number of targets (tokens, samples, ...) that ``sum`` covers: a plain number when
    it is known on the host (cheaper: no device op), a scalar tensor when it is computed
    from the data (a padding mask)."""
    components: dict[str, Tensor] = field(default_factory=dict)
    """name -> scalar SUM over targets of each loss term (logged as ``train/loss/<name>``)."""
    per_sample: Tensor | None = None
    """(B,) sum of the loss per sample, when cheap (used to find bad samples)."""
    logits: Tensor | None = None
    """(..., C) the model's logits over C classes, one row per target that ``count`` counts
    ((B, T, V) for a language model, (B, C) for a classifier; drop padded targets, e.g.
    ``logits[mask]``), in the same order for any model of the task. Distillation reads them
    (a teacher's rows against the student's; see docs/distillation.md). None: the task
    gives none and cannot be distilled."""


LABEL_KEYS = ("y", "targets", "labels")
"""Keys of a dict batch that hold labels, not model inputs."""


def input_tensor(batch: object) -> Tensor | None:
    """The floating-point model input of a batch, the part the input guard and the drills
    treat as input: the batch itself when it is a tensor, the first element of an
    (inputs, targets) pair, or the first floating-point tensor of a dict that is not under a
    label key. None for integer inputs (token ids)."""
    if isinstance(batch, Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and batch:
        x = batch[0]
    elif isinstance(batch, dict):
        x = next((v for k, v in batch.items() if k not in LABEL_KEYS and isinstance(v, Tensor)
                  and v.is_floating_point()), None)
    else:
        x = None
    return x if isinstance(x, Tensor) and x.is_floating_point() and x.ndim >= 1 else None


def sample_norms(x: Tensor) -> tuple[Tensor, int]:
    """((B,) float32 L2 norm of each sample of a (B, ...) input, the sample size D): the
    samples' root-mean-square is norm / sqrt(D)."""
    flat = x.detach().reshape(x.shape[0], -1)
    return torch.linalg.vector_norm(flat, dim=1, dtype=torch.float32), flat.shape[1]


MetricSums = dict[str, tuple[Tensor, Tensor]]
"""metric name -> (sum, count); an evaluation reports sum/count over the whole split."""


class Task:
    """Base class of every task. Subclasses set ``name``, ``metric`` and
    ``higher_is_better`` and implement the methods that raise NotImplementedError."""

    name: str = "task"
    metric: str = "loss"
    """The main evaluation metric (a key of ``metrics()``): what the run is judged by."""
    higher_is_better: bool = False
    unit: str = "samples"
    """What ``count`` counts, for throughput: 'samples' or 'tokens'."""

    def build_model(self) -> nn.Module:
        raise NotImplementedError  # abstract

    def train_data(self) -> Dataset:
        raise NotImplementedError  # abstract

    def eval_data(self) -> Dataset | None:
        """The validation split: evaluated during training, what runs are compared and
        selected on."""
        return None

    def test_data(self) -> Dataset | None:
        """The held-out test split, disjoint from training and validation: never evaluated
        during training, so that a number reported on it was not used to choose anything
        (trainwell bench reports it for the setting chosen on validation). None: no test
        split."""
        return None

    def collate(self, samples: list[Any]) -> Any:
        return default_collate(samples)

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        raise NotImplementedError  # abstract

    def sample_losses(self, model: nn.Module, batch: Any) -> Tensor | None:
        """(B,) each sample's loss, computed on demand: the autopilot asks for them only when
        it refused an update and ``loss`` reported no ``per_sample`` (to name the samples
        responsible). None (the default): this task cannot tell them apart."""
        return None

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        """Default: the loss itself, per target."""
        out = self.loss(model, batch)
        return {"loss": (out.sum.detach(), out.count)}

    def sample(self, model: nn.Module, n: int) -> str | None:
        """A short generated sample to show at the end of the run (language models)."""
        return None


@dataclass(frozen=True)
class TaskSpec:
    """A registered built-in task."""

    name: str
    help: str
    build: Callable[[Any], Task]
    """RunConfig -> Task."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Config values this task prefers (nested dict), merged under the user's values."""


def count_of(x: Tensor | int | float) -> Tensor:
    return x if isinstance(x, Tensor) else torch.tensor(float(x))
