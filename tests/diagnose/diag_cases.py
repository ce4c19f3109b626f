"""The diagnosis suite: broken trainings (each with the finding that must come first) and
healthy ones (no high or medium finding), written as users write them: their own models in
their own tasks or through fit()'s arguments, and trainwell's built-in digits task and models
with one thing broken. tests/diagnose/test_diag_suite.py runs every case;
benchmarks/diagnose_suite.py prints the confusion table of docs/diagnose.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diag_helpers import AlwaysTrainBN, ArrayTask, digits_arrays, mlp
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from trainwell.api import FunctionTask
from trainwell.config import RunConfig, load_config
from trainwell.data.arrays import load_digits_arrays
from trainwell.tasks.base import LossOutput, MetricSums, Task


@dataclass(frozen=True)
class Case:
    name: str
    """'kind/variant'."""
    expected: str | None
    """The id that must come first; None: a healthy training (no high or medium finding)."""
    make: Callable[[], Task]
    sets: dict[str, Any] = field(default_factory=dict)
    """Config overrides (dotted keys) on top of the user-task defaults (config())."""
    builtin: bool = False
    """The built-in digits task (its config, its model) with the bug injected."""

    @property
    def kind(self) -> str:
        return self.name.split("/")[0]


def config(case: Case) -> RunConfig:
    base: dict[str, Any] = {"train": {"batch_size": 64, "steps": 400, "threads": 1}, "schedule": {"warmup_steps": 20}}
    if case.builtin:
        base["task"] = {"name": "digits"}
        base["model"] = {"kind": "mlp", "width": 64, "depth": 2}
    else:
        base["task"] = {"name": "array"}
        base["optim"] = {"lr": 3e-3}
    overrides = [f"{k}={v}" for k, v in case.sets.items()]
    return load_config(base=base, overrides=overrides, check_task=False)


# ---------------------------------------------------------------- user models


class SmallCNN(nn.Module):
    def __init__(self, bias: float | None = None, bn: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32) if bn else nn.Identity()
        self.head = nn.Linear(32 * 4 * 4, 10)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()
        if bias is not None:
            nn.init.constant_(self.conv1.bias, bias)
            nn.init.constant_(self.conv2.bias, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(-1, 1, 8, 8)
        x = F.max_pool2d(self.act1(self.conv1(x)), 2)  # (B, 16, 4, 4)
        x = self.act2(self.bn(self.conv2(x)))  # (B, 32, 4, 4)
        return self.head(x.flatten(1))


class LayerNormMLP(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, width), nn.LayerNorm(width), nn.GELU(),
                                 nn.Linear(width, width), nn.LayerNorm(width), nn.GELU(), nn.Linear(width, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class RowTransformer(nn.Module):
    """The 8x8 image as 8 tokens of 8 pixels through a small pre-norm transformer encoder."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.zeros(8, d))
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x.view(-1, 8, 8)) + self.pos  # (B, T, C)
        return self.head(self.encoder(h).mean(1))


class IgnoresInput(nn.Sequential):
    """A forward that uses a zero tensor where the input should go (a renamed variable)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(torch.zeros_like(x))


class DetachedOutput(nn.Module):
    """The network's output detached (a .detach() left from logging), plus a learned bias
    after it: the loss moves a little, the weights get nothing."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.bias = net, nn.Parameter(torch.zeros(10))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).detach() + self.bias


class EvalInForward(nn.Sequential):
    """Calls self.eval() in forward (meant for a frozen feature extractor)."""

    def forward(self, x: Tensor) -> Tensor:
        self.eval()
        return super().forward(x)


def momentum_zero(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    return model


def scaled_head(model: nn.Module, factor: float = 30.0) -> nn.Module:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
    return model


# ---------------------------------------------------------------- tasks


class Wrapped(Task):
    """A task with one thing changed: its model (``model``), its training or evaluation data
    (``train``/``evaluation``) or its loss (``loss_fn(logits, y)``)."""

    def __init__(self, base: Task, model: Callable[[nn.Module], nn.Module] | None = None,
                 train: Dataset | None = None, evaluation: Dataset | None = None,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        self.base, self.wrap, self._train, self._eval, self.loss_fn = base, model, train, evaluation, loss_fn
        self.name, self.metric, self.higher_is_better = base.name, base.metric, base.higher_is_better
        self.num_classes = getattr(base, "num_classes", None)

    def build_model(self) -> nn.Module:
        model = self.base.build_model()
        return self.wrap(model) if self.wrap else model

    def train_data(self) -> Any:
        return self._train if self._train is not None else self.base.train_data()

    def eval_data(self) -> Any:
        return self._eval if self._eval is not None else self.base.eval_data()

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        if self.loss_fn is None:
            return self.base.loss(model, batch)
        x, y = batch
        ps = self.loss_fn(model(x), y)
        return LossOutput(ps.sum(), float(len(y)), {}, ps)

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        return self.base.metrics(model, batch)


def builtin(**model: Any) -> Task:
    """The built-in digits task with its model from [model] (overrides on a 2x64 MLP)."""
    from trainwell.tasks.digits import Digits

    base = {"task": {"name": "digits"}, "model": {"kind": "mlp", "width": 64, "depth": 2, **model}}
    return Digits(load_config(base=base))


def user(make: Callable[[], nn.Module], scale: str = "standard", labels: str = "ok",
         evaluation: str | None = "split") -> ArrayTask:
    x, y = digits_arrays(scale)
    return ArrayTask(x, y, make, labels, evaluation)


def permuted(data: Dataset) -> TensorDataset:
    """The same inputs with their labels in a fixed random order (a shuffle applied to one list)."""
    x, y = _tensors(data)
    return TensorDataset(x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))])


def shares(train: Dataset, evaluation: Dataset) -> TensorDataset:
    """An evaluation split of which half are training samples (split after duplicating)."""
    (x, y), (xe, ye) = _tensors(train), _tensors(evaluation)
    k = len(xe) // 2
    return TensorDataset(torch.cat([x[:k], xe[k:]]), torch.cat([y[:k], ye[k:]]))


def raw_pixels(evaluation: Dataset, shape: tuple[int, ...]) -> TensorDataset:
    """The evaluation split left unstandardised (raw pixels 0-16) while training's is."""
    x, y = load_digits_arrays()
    x = torch.tensor(x, dtype=torch.float32)
    _, ye = _tensors(evaluation)
    return TensorDataset(x[-len(ye):].reshape(len(ye), *shape), torch.tensor(y[-len(ye):], dtype=torch.long))


def _tensors(data: Any) -> tuple[Tensor, Tensor]:
    batch = data[torch.arange(len(data))] if not isinstance(data, TensorDataset) else data.tensors
    return batch[0], batch[1]


def scaled(base: Task, factor: float) -> Wrapped:
    x, y = _tensors(base.train_data())
    return Wrapped(base, train=TensorDataset(x * factor, y))


def regression(target_scale: float = 1.0, builtin_model: bool = False) -> Task:
    """Predict a smooth function of the digit image (its ink mass in the upper half, standardised),
    times ``target_scale`` (1000: a price in raw units), with MSE, through fit()'s arguments."""
    x, _ = digits_arrays()
    raw, _ = digits_arrays("unit")
    t = raw[:, :32].sum(1, keepdim=True)
    t = (t - t.mean()) / t.std() * target_scale  # (N, 1)
    if builtin_model:
        from trainwell.models import ModelSpec, build_model

        cfg = load_config(base={"model": {"kind": "mlp", "width": 64, "depth": 2}})
        model = build_model(cfg.model, ModelSpec(input_shape=(64,), num_classes=1))
    else:
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    n = len(x) * 9 // 10
    return FunctionTask(model, TensorDataset(x[:n], t[:n]), F.mse_loss, eval_data=TensorDataset(x[n:], t[n:]))


def softmax_into_cross_entropy(builtin_model: bool) -> Task:
    """fit()'s arguments: a model ending in Softmax, and F.cross_entropy as the loss."""
    x, y = digits_arrays()
    body = builtin().build_model() if builtin_model else mlp(2)
    return FunctionTask(nn.Sequential(body, nn.Softmax(-1)), TensorDataset(x, y), F.cross_entropy)


def sigmoid_into_bce_with_logits() -> Task:
    """Multi-label (one-hot) targets, a model ending in Sigmoid, BCEWithLogitsLoss."""
    x, y = digits_arrays()
    onehot = F.one_hot(y, 10).float()
    return FunctionTask(nn.Sequential(mlp(2), nn.Sigmoid()), TensorDataset(x, onehot), nn.BCEWithLogitsLoss())


def reshuffled_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Labels permuted anew at every call (an augmentation applied to the labels alone)."""
    return F.cross_entropy(logits, y[torch.randperm(len(y))], reduction="none")


def zeros_loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, torch.zeros_like(y), reduction="none")


def _b(**model: Any) -> Callable[[], Task]:
    return lambda: builtin(**model)


# ---------------------------------------------------------------- the cases

SICK: list[Case] = [
    Case("lr_too_high/builtin-mlp-adamw", "lr_too_high", _b(), {"optim.lr": 0.3}, builtin=True),
    Case("lr_too_high/user-cnn-sgd", "lr_too_high", lambda: user(SmallCNN), {"optim.name": "sgd", "optim.lr": 3.0}),
    Case("lr_too_low/builtin-mlp-adamw", "lr_too_low", _b(), {"optim.lr": 1e-7}, builtin=True),
    Case("lr_too_low/user-cnn-sgd", "lr_too_low", lambda: user(SmallCNN), {"optim.name": "sgd", "optim.lr": 1e-6}),
    Case("loss_without_gradient/user-detached-in-loss", "loss_without_gradient", lambda: user(mlp, labels="detached")),
    Case("loss_without_gradient/builtin-detached-plus-bias", "loss_without_gradient",
         lambda: Wrapped(builtin(), model=DetachedOutput), builtin=True),
    Case("loss_without_gradient/user-cnn-detached-plus-bias-sgd", "loss_without_gradient",
         lambda: user(lambda: DetachedOutput(SmallCNN())), {"optim.name": "sgd", "optim.lr": 0.05}),
    Case("vanishing_gradients/user-sigmoid-8", "vanishing_gradients",
         lambda: user(lambda: mlp(8, act=nn.Sigmoid, init_std=0.01))),
    Case("vanishing_gradients/builtin-sigmoid-8", "vanishing_gradients",
         _b(activation="sigmoid", residual=False, norm="none", depth=8, init="normal", init_std=0.01), builtin=True),
    Case("init_scale_large/user-relu-6", "init_scale_large", lambda: user(lambda: mlp(6, init_std=0.4))),
    Case("init_scale_large/builtin-relu-6", "init_scale_large",
         _b(activation="relu", residual=False, norm="none", depth=6, init="normal", init_std=0.4), builtin=True),
    Case("saturated_units/user-tanh", "saturated_units", lambda: user(lambda: mlp(3, act=nn.Tanh, init_std=0.5))),
    Case("saturated_units/builtin-tanh-sgd", "saturated_units",
         _b(activation="tanh", residual=False, norm="none", depth=3, init="normal", init_std=0.5),
         {"optim.name": "sgd", "optim.lr": 0.05}, builtin=True),
    Case("dead_relus/user-mlp", "dead_relus", lambda: user(lambda: mlp(2, bias=-3.0))),
    Case("dead_relus/user-cnn", "dead_relus", lambda: user(lambda: SmallCNN(bias=-3.0))),
    Case("inputs_not_scaled/user-mlp-x255", "inputs_not_scaled", lambda: user(mlp, scale="x255")),
    Case("inputs_not_scaled/builtin-mlp-x255", "inputs_not_scaled", lambda: scaled(builtin(), 255.0), builtin=True),
    Case("inputs_not_centred/user-mlp", "inputs_not_centred", lambda: user(mlp, scale="unit")),
    Case("inputs_not_centred/user-cnn-sgd", "inputs_not_centred", lambda: user(SmallCNN, scale="unit"),
         {"optim.name": "sgd", "optim.lr": 0.05}),
    Case("loss_at_init/user-mlp", "loss_at_init", lambda: user(lambda: scaled_head(mlp(2)))),
    Case("loss_at_init/builtin-mlp", "loss_at_init", lambda: Wrapped(builtin(), model=scaled_head), builtin=True),
    Case("output_ignores_input/user-mlp", "output_ignores_input", lambda: user(lambda: IgnoresInput(*mlp(2)))),
    Case("output_ignores_input/builtin-mlp-sgd", "output_ignores_input",
         lambda: Wrapped(builtin(), model=lambda m: IgnoresInput(m)), {"optim.name": "sgd", "optim.lr": 0.05},
         builtin=True),
    Case("cannot_overfit/user-labels-reshuffled-each-call", "cannot_overfit", lambda: user(mlp, labels="shuffled")),
    Case("cannot_overfit/builtin-cnn-labels-reshuffled-each-call", "cannot_overfit",
         lambda: Wrapped(builtin(kind="cnn", width=16, depth=2), loss_fn=reshuffled_loss), builtin=True),
    Case("loss_ignores_labels/user-mlp", "loss_ignores_labels", lambda: user(mlp, labels="zeros")),
    Case("loss_ignores_labels/builtin-cnn", "loss_ignores_labels",
         lambda: Wrapped(builtin(kind="cnn", width=16, depth=2), loss_fn=zeros_loss), builtin=True),
    Case("batchnorm_train_mode_in_eval/user-mlp", "batchnorm_train_mode_in_eval",
         lambda: user(lambda: AlwaysTrainBN(*mlp(2, batchnorm=True)))),
    Case("batchnorm_train_mode_in_eval/builtin-mlp", "batchnorm_train_mode_in_eval",
         lambda: Wrapped(builtin(norm="batch"), model=lambda m: AlwaysTrainBN(m)), builtin=True),
    Case("batchnorm_frozen_in_train/user-mlp", "batchnorm_frozen_in_train",
         lambda: user(lambda: EvalInForward(*mlp(2, batchnorm=True)))),
    Case("batchnorm_frozen_in_train/builtin-resnet", "batchnorm_frozen_in_train",
         lambda: Wrapped(builtin(kind="resnet", width=16, depth=2, norm="batch"), model=lambda m: EvalInForward(m)),
         builtin=True),
    Case("batchnorm_stats_frozen/user-mlp-momentum0", "batchnorm_stats_frozen",
         lambda: user(lambda: momentum_zero(mlp(2, batchnorm=True)))),
    Case("batchnorm_stats_frozen/user-cnn-momentum0-sgd", "batchnorm_stats_frozen",
         lambda: user(lambda: momentum_zero(SmallCNN(bn=True))), {"optim.name": "sgd", "optim.lr": 0.05}),
    Case("batchnorm_stats_frozen/builtin-resnet-momentum0", "batchnorm_stats_frozen",
         lambda: Wrapped(builtin(kind="resnet", width=16, depth=2, norm="batch"), model=momentum_zero), builtin=True),
    Case("labels_do_not_match_inputs/user-mlp", "labels_do_not_match_inputs",
         lambda: (lambda t: Wrapped(t, train=permuted(t.train_data())))(user(mlp))),
    Case("labels_do_not_match_inputs/builtin-cnn", "labels_do_not_match_inputs",
         lambda: (lambda t: Wrapped(t, train=permuted(t.train_data())))(builtin(kind="cnn", width=16, depth=2)),
         builtin=True),
    Case("labels_do_not_match_inputs/user-transformer-sgd", "labels_do_not_match_inputs",
         lambda: (lambda t: Wrapped(t, train=permuted(t.train_data())))(user(RowTransformer)),
         {"optim.name": "sgd", "optim.lr": 0.05}),
    Case("outputs_are_probabilities/fit-mlp-softmax", "outputs_are_probabilities",
         lambda: softmax_into_cross_entropy(False)),
    Case("outputs_are_probabilities/fit-builtin-mlp-softmax", "outputs_are_probabilities",
         lambda: softmax_into_cross_entropy(True), builtin=True),
    Case("outputs_are_probabilities/fit-sigmoid-bce-with-logits", "outputs_are_probabilities",
         sigmoid_into_bce_with_logits),
    Case("target_scale/fit-mlp-x1000", "target_scale", lambda: regression(1000.0)),
    Case("target_scale/fit-builtin-mlp-x1000-sgd", "target_scale", lambda: regression(1000.0, builtin_model=True),
         {"optim.name": "sgd", "optim.lr": 0.01}, builtin=True),
    Case("eval_shares_samples/user-mlp", "eval_shares_samples",
         lambda: (lambda t: Wrapped(t, evaluation=shares(t.train_data(), t.eval_data())))(user(mlp))),
    Case("eval_shares_samples/builtin-cnn", "eval_shares_samples",
         lambda: (lambda t: Wrapped(t, evaluation=shares(t.train_data(), t.eval_data())))(
             builtin(kind="cnn", width=16, depth=2)), builtin=True),
    Case("eval_inputs_differ/user-mlp", "eval_inputs_differ",
         lambda: (lambda t: Wrapped(t, evaluation=raw_pixels(t.eval_data(), (64,))))(user(mlp))),
    Case("eval_inputs_differ/builtin-cnn", "eval_inputs_differ",
         lambda: (lambda t: Wrapped(t, evaluation=raw_pixels(t.eval_data(), (1, 8, 8))))(
             builtin(kind="cnn", width=16, depth=2)), builtin=True),
    Case("clipping_most_steps/user-mlp", "clipping_most_steps", lambda: user(mlp), {"clip.max_norm": 0.05}),
    Case("clipping_most_steps/builtin-mlp", "clipping_most_steps", _b(), {"clip.max_norm": 0.02}, builtin=True),
]

HEALTHY: list[Case] = [
    Case("healthy/builtin-mlp-defaults", None, _b(), builtin=True),
    Case("healthy/builtin-cnn", None, _b(kind="cnn", width=16, depth=2), builtin=True),
    Case("healthy/builtin-resnet-batchnorm", None, _b(kind="resnet", width=16, depth=2, norm="batch"), builtin=True),
    Case("healthy/builtin-mlp-no-norm-sgd", None, _b(norm="none", residual=False),
         {"optim.name": "sgd", "optim.lr": 0.05}, builtin=True),
    Case("healthy/user-relu-mlp", None, lambda: user(mlp)),
    Case("healthy/user-batchnorm-mlp", None, lambda: user(lambda: mlp(2, batchnorm=True))),
    Case("healthy/user-layernorm-gelu-mlp", None, lambda: user(LayerNormMLP)),
    Case("healthy/user-small-cnn", None, lambda: user(SmallCNN)),
    Case("healthy/user-cnn-batchnorm-sgd", None, lambda: user(lambda: SmallCNN(bn=True)),
         {"optim.name": "sgd", "optim.lr": 0.05}),
    Case("healthy/user-transformer", None, lambda: user(RowTransformer), {"optim.lr": 1e-3}),
    Case("healthy/user-tanh-xavier-mlp", None,
         lambda: user(lambda: _xavier(mlp(3, act=nn.Tanh)))),
    Case("healthy/user-wide-mlp-clip-0.5", None, lambda: user(lambda: mlp(2, width=256)), {"clip.max_norm": 0.5}),
    Case("healthy/fit-regression-mse", None, lambda: regression(1.0)),
]


def _xavier(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return model


CASES = SICK + HEALTHY
