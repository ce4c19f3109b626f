"""The Python API: ``trainwell.fit(model, data, loss_fn, config)`` for any nn.Module and the
data where the user has it (a Dataset, a DataLoader, any iterable of batches, tensors or
numpy arrays, an HF dataset: data/source.py), ``trainwell.diagnose(model, data, loss_fn)``
and ``trainwell.lr_find(model, data, loss_fn)`` for the same three, and
``trainwell.train(config)`` for a RunConfig/TOML."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.config import RunConfig, as_run_config, load_config
from trainwell.data.batches import batch_len
from trainwell.data.loader import split_batch
from trainwell.data.source import loader_batch_size
from trainwell.errors import ConfigError, TaskError
from trainwell.sinks.console import quiet
from trainwell.tasks.base import LossOutput, MetricSums, Task
from trainwell.train.loop import RunResult, run

MetricFn = Callable[[Any, Any], Tensor]
Data = Any
"""A Dataset, a DataLoader (or torchdata's StatefulDataLoader), any iterable of batches, a
tensor or numpy array, a tuple or dict of them, or an HF ``datasets.Dataset``."""


LOSS_FORMS = (
    "loss_fn(outputs, targets), called as loss_fn(model(inputs), targets) for (inputs, targets) batches",
    "loss_fn(model, batch), called with the model and the whole batch: for every other batch, and for any "
    "batch when loss_fn's first parameter is named 'model' or annotated nn.Module",
)
"""The two forms of a loss function fit() and diagnose() accept, as the error message names them."""


def takes_model(loss_fn: Callable[..., Any]) -> bool:
    """True when ``loss_fn`` is written ``loss_fn(model, batch)``: its first parameter is named
    ``model`` or annotated as an nn.Module. The name decides, not a trial call, so that a loss
    is never run twice or scored in the wrong form by accident."""
    try:
        params = list(inspect.signature(loss_fn).parameters.values())
    except (TypeError, ValueError):  # builtins and C functions without a signature
        return False
    if not params:
        return False
    first = params[0]
    annotation = first.annotation
    if isinstance(annotation, str):
        return first.name == "model" or annotation.split(".")[-1] in ("Module", "nn.Module")
    return first.name == "model" or (isinstance(annotation, type) and issubclass(annotation, nn.Module))


class FunctionTask(Task):
    """A Task around a user's model, dataset and loss function.

    Batches that are ``(inputs, targets)`` pairs are scored with ``loss_fn(model(inputs),
    targets)``; any other batch (a dict, a single tensor...), and every batch when
    ``loss_fn``'s first parameter is named ``model`` (takes_model), with ``loss_fn(model,
    batch)``. ``loss_fn`` returns the mean over the batch (PyTorch's default reduction); the
    step weights each micro-batch by its number of samples, so accumulation equals the full
    batch. A loss function that fails on the first batch with a TypeError, ValueError or
    AttributeError (the signs of the other form) is reported as a TaskError naming both forms.
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
        self.model_form = takes_model(loss_fn)
        """True: loss_fn(model, batch) for every batch; False: loss_fn(outputs, targets) for pairs."""
        self._called = False

    def build_model(self) -> nn.Module:
        return self.model

    def train_data(self) -> Data:
        return self.data

    def eval_data(self) -> Data | None:
        return self._eval

    def _outputs(self, model: nn.Module, batch: Any) -> tuple[Any, Any, int] | None:
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            x, y = batch
            return model(x), y, batch_len(y)
        return None

    def _score(self, model: nn.Module, batch: Any, pair: tuple[Any, Any, int] | None) -> Tensor:
        """The mean loss of the batch in the form loss_fn is written in."""
        with_model = pair is None or self.model_form
        if self._called:
            return self.loss_fn(model, batch) if with_model else self.loss_fn(pair[0], pair[1])  # type: ignore[index]
        try:
            mean = self.loss_fn(model, batch) if with_model else self.loss_fn(pair[0], pair[1])  # type: ignore[index]
        except (TypeError, ValueError, AttributeError) as e:  # the other form's usual failures
            called = "loss_fn(model, batch)" if with_model else "loss_fn(outputs, targets)"
            raise TaskError(
                f"loss_fn failed on the first batch, called as {called}: {type(e).__name__}: {e}. "
                f"trainwell accepts two forms: {'; or '.join(LOSS_FORMS)}."
            ) from e
        self._called = True
        return mean

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        pair = None if self.model_form else self._outputs(model, batch)
        mean = self._score(model, batch, pair)
        count = float(pair[2] if pair is not None else batch_len(batch))
        return LossOutput(sum=mean * count, count=count)

    @torch.no_grad()
    def sample_losses(self, model: nn.Module, batch: Any) -> Tensor | None:
        """Each sample's loss: ``loss_fn`` is a mean over the batch, so scored on one sample
        it is that sample's loss. Pairs take one forward of the batch, then ``loss_fn`` row by
        row; other batches one forward per sample (a model that cannot take a batch of one,
        such as BatchNorm in training mode, gives None). Only on a refused update."""
        pair = None if self.model_form else self._outputs(model, batch)
        if pair is not None:
            out, y, n = pair
            rows = [split_batch(t, [1] * n) for t in (out, y)]
            if rows[0] is None or rows[1] is None:
                return None
            return torch.stack([self.loss_fn(o, t).detach().float() for o, t in zip(*rows, strict=True)])
        samples = split_batch(batch, [1] * batch_len(batch))
        if samples is None:
            return None
        try:
            return torch.stack([self.loss(model, row).sum.detach().float() for row in samples])
        except (RuntimeError, ValueError, TaskError):  # e.g. BatchNorm: "Expected more than 1 value per channel"
            return None

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        pair = self._outputs(model, batch)
        if pair is None or self.model_form:  # the loss as loss_fn(model, batch) computes it
            scored = self.loss(model, batch)
            result: MetricSums = {"loss": (scored.sum.detach().cpu(), torch.tensor(scored.count))}
        if pair is None:
            return result
        out, y, n = pair
        count = torch.tensor(float(n))
        if not self.model_form:
            result = {"loss": (self._score(model, batch, pair).detach().cpu() * count, count)}
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
    resume: bool = False,
) -> RunResult:
    """Train ``model`` on ``train_data`` with ``loss_fn`` and trainwell's defaults.

    ``train_data`` / ``eval_data``: a Dataset; in-memory data (TensorDataset, StackDataset, a
    tensor or numpy array, a tuple or dict of them, an HF dataset in torch format), indexed a
    batch of ``train.batch_size`` at a time; a DataLoader or any iterable of batches, used as
    its batches come (docs/training.md says how each resumes). A DataLoader's batch size is
    the run's: ``train.batch_size`` set to another value is a ConfigError
    (data/source.py, loader_batch_size).
    ``config``: a RunConfig, a nested dict such as ``{"train": {"steps": 200}}``, or a TOML
    path. ``loss_fn``: ``loss_fn(outputs, targets)`` or ``loss_fn(model, batch)`` (FunctionTask
    says which is used when). ``progress``: None follows ``log.progress`` (a bar on a terminal,
    plain lines otherwise); False prints nothing (warnings still go to the 'trainwell' logger).
    ``resume``: continue from the newest valid checkpoint in ``run_dir`` (model, optimizer,
    schedule, data position, RNG); with none there yet, start from the beginning.
    Returns a RunResult with the final metrics and the run directory; the model is trained in
    place. The run's summary.json and report describe ``model`` (its class and parameters)."""
    if resume and run_dir is None:
        raise ConfigError("fit(resume=True) needs run_dir: the run directory to continue")
    cfg = loader_batch_size(_as_config(config), train_data)
    task = FunctionTask(model, train_data, loss_fn, eval_data, metrics, higher_is_better)
    # the loop starts a run without a checkpoint again from step 0 (dropping the rows it had
    # logged), is silent with progress=False and names the model in summary.json
    return run(cfg, task=task, run_dir=run_dir, progress=progress, resume=resume)


def diagnose(
    model: nn.Module,
    train_data: Data,
    loss_fn: Callable[..., Tensor],
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    eval_data: Data | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    run_dir: str | Path | None = None,
    steps: int = 50,
    progress: bool = False,
) -> Any:
    """``trainwell diagnose`` for the arguments of fit(): probe ``model``, ``train_data`` and
    ``loss_fn`` (with ``config``'s optimizer, LR, batch size...) and return the Diagnosis (its
    ``findings``, worst first; ``render(d)`` or ``print(d)`` puts them in words). ``model`` is
    left as it was. ``train_data``: any kind fit() takes; the probes that look at samples
    take them from a dataset at random, from a DataLoader or an iterable of batches as its
    next batches, joined or cut to the samples they need (data/draw.py). ``eval_data`` is
    checked against ``train_data`` (shared samples, other input statistics). ``progress``:
    False prints nothing while probing."""
    from trainwell.diagnose.run import diagnose as run_diagnosis

    if steps < 10:
        raise ConfigError(f"steps must be >= 10 (the short run measures every steps/5 steps), got {steps}")
    cfg = _as_config(config)
    task = FunctionTask(model, train_data, loss_fn, eval_data, metrics)
    with quiet() if not progress else contextlib.nullcontext():
        return run_diagnosis(cfg, task=task, run_dir=run_dir, steps=steps)


def lr_find(
    model: nn.Module,
    train_data: Data,
    loss_fn: Callable[..., Tensor],
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
) -> Any:
    """``trainwell lr-find`` for the arguments of fit(): the LR range test (Smith 2017) on
    ``model``, ``train_data`` (any kind fit() takes, read as training reads it) and ``loss_fn``
    with ``config``'s optimizer, batch size and clipping. Returns the LRFindResult
    (``suggested_lr``, None when no learning rate works, and ``message`` in words); writes
    lr_find.json and lr_find.svg in ``run_dir``. ``model`` is left as it was; nothing is printed."""
    from trainwell.diagnose.lr_find import lr_range_test

    cfg = _as_config(config)
    task = FunctionTask(model, train_data, loss_fn)
    return lr_range_test(cfg, task=task, run_dir=run_dir, min_lr=min_lr, max_lr=max_lr, steps=steps)


def train(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train a built-in or entry-point task from a config (the CLI's ``trainwell train``).
    ``progress``: as for fit (False prints nothing)."""
    return run(as_run_config(config), run_dir=run_dir, progress=progress)


def _as_config(config: RunConfig | Mapping[str, Any] | str | Path | None) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    base: dict[str, Any] = {"task": {"name": "fit"}}
    if isinstance(config, Mapping):
        from trainwell.config import deep_merge

        return load_config(base=deep_merge(base, config), check_task=False)
    return load_config(config, base=base, check_task=False)


