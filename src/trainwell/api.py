"""The Python API: ``trainwell.fit(model, data, loss_fn, config)`` for any nn.Module and the
data where the user has it (a Dataset, a DataLoader, any iterable of batches, tensors or
numpy arrays, an HF dataset: data/source.py), and ``trainwell.train(config)`` for a
RunConfig/TOML."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.config import RunConfig, load_config
from trainwell.tasks.base import LossOutput, MetricSums, Task
from trainwell.train.loop import RunResult, run

MetricFn = Callable[[Any, Any], Tensor]
Data = Any
"""A Dataset, a DataLoader (or torchdata's StatefulDataLoader), any iterable of batches, a
tensor or numpy array, a tuple or dict of them, or an HF ``datasets.Dataset``."""


class FunctionTask(Task):
    """A Task around a user's model, dataset and loss function.

    Batches that are ``(inputs, targets)`` pairs are scored with ``loss_fn(model(inputs),
    targets)``; any other batch (a dict, a single tensor...) with ``loss_fn(model, batch)``.
    ``loss_fn`` returns the mean over the batch (PyTorch's default reduction); the step
    weights each micro-batch by its number of samples, so accumulation equals the full batch.
    """

    name = "fit"

    def __init__(
        self,
        model: nn.Module,
        train_data: Data,
        loss_fn: Callable[..., Tensor],
        eval_data: Data | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
        higher_is_better: bool = False,
    ) -> None:
        self.model, self.data, self.loss_fn = model, train_data, loss_fn
        self._eval, self._metrics = eval_data, dict(metrics or {})
        self.metric = next(iter(self._metrics), "loss")
        self.higher_is_better = higher_is_better

    def build_model(self) -> nn.Module:
        return self.model

    def train_data(self) -> Data:
        return self.data

    def eval_data(self) -> Data | None:
        return self._eval

    def _outputs(self, model: nn.Module, batch: Any) -> tuple[Any, Any, int] | None:
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            x, y = batch
            return model(x), y, _batch_len(y)
        return None

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        pair = self._outputs(model, batch)
        if pair is not None:
            out, y, n = pair
            mean = self.loss_fn(out, y)
        else:
            mean, n = self.loss_fn(model, batch), _batch_len(batch)
        count = float(n)
        return LossOutput(sum=mean * count, count=count)

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        pair = self._outputs(model, batch)
        if pair is None:
            out = self.loss(model, batch)
            return {"loss": (out.sum, out.count)}
        out, y, n = pair
        count = torch.tensor(float(n))
        result = {"loss": (self.loss_fn(out, y).detach().cpu() * count, count)}
        for name, fn in self._metrics.items():
            result[name] = (fn(out, y).detach().float().cpu() * count, count)
        return result


def fit(
    model: nn.Module,
    train_data: Data,
    loss_fn: Callable[..., Tensor],
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    eval_data: Data | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    higher_is_better: bool = False,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train ``model`` on ``train_data`` with ``loss_fn`` and trainwell's defaults.

    ``train_data`` / ``eval_data``: a Dataset; in-memory data (TensorDataset, StackDataset, a
    tensor or numpy array, a tuple or dict of them, an HF dataset in torch format), indexed a
    batch of ``train.batch_size`` at a time; a DataLoader or any iterable of batches, used as
    its batches come (docs/training.md says how each resumes).
    ``config``: a RunConfig, a nested dict such as ``{"train": {"steps": 200}}``, or a TOML
    path. Returns a RunResult with the final metrics and the run directory; the model is
    trained in place."""
    cfg = _as_config(config)
    task = FunctionTask(model, train_data, loss_fn, eval_data, metrics, higher_is_better)
    return run(cfg, task=task, run_dir=run_dir, progress=progress)


def train(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train a built-in or entry-point task from a config (the CLI's ``trainwell train``)."""
    if isinstance(config, RunConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = load_config(base=config)
    else:
        cfg = load_config(config)
    return run(cfg, run_dir=run_dir, progress=progress)


def _as_config(config: RunConfig | Mapping[str, Any] | str | Path | None) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    base: dict[str, Any] = {"task": {"name": "fit"}}
    if isinstance(config, Mapping):
        from trainwell.config import deep_merge

        return load_config(base=deep_merge(base, config), check_task=False)
    return load_config(config, base=base, check_task=False)


def _batch_len(x: Any) -> int:
    if isinstance(x, Tensor):
        return int(x.shape[0]) if x.ndim else 1
    if isinstance(x, Mapping):
        return _batch_len(next(iter(x.values())))
    if isinstance(x, (tuple, list)):
        return _batch_len(x[0]) if x and not isinstance(x[0], (int, float)) else len(x)
    return 1
