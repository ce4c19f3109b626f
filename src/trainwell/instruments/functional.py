"""The model and its task as pure functions of the parameters.

Instruments evaluate the loss at θ_t (before the update) or θ_{t+1} (after it) on the same
batch, per sample or batched, without touching the live model: ``torch.func.functional_call``
swaps in the given parameters for one call, and every call gets cloned buffers so that a
BatchNorm forward in training mode updates copies, never the model's running statistics.

Per-sample gradients use ``torch.func.vmap`` over ``torch.func.grad`` of ``task.loss`` on a
batch of one sample. That works for any model whose forward is vmap-able, with one exception
that we report instead of hiding: BatchNorm mixes the samples of a batch, so a per-sample
gradient is ill-defined; per-sample computations run such layers on their running
statistics (eval mode) and the runner flags them as ``inst/unsupported/<module>``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from trainwell.data.batches import batch_len
from trainwell.tasks.base import LossOutput, Task


class _TaskLoss(nn.Module):
    """``task.loss(model, batch)`` as a module, so that functional_call can swap the model's
    parameters (named ``model.<name>``) while the task drives the forward."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Any) -> LossOutput:
        return self.task.loss(self.model, batch)


class FunctionalModel:
    """``model`` + ``task`` evaluated at any parameters. ``params`` dicts map the model's
    parameter names (trainable ones only) to tensors."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        self.model = model
        self.task = task
        self._module = _TaskLoss(model, task)
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.batchnorms = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
        """Modules that make per-sample gradients ill-defined (reported, never skipped silently)."""
        self._has_per_sample: bool | None = None

    # ------------------------------------------------------------ parameters and batches

    def live_params(self) -> dict[str, Tensor]:
        """The model's current trainable parameters, detached (no copy)."""
        named = dict(self.model.named_parameters())
        return {n: named[n].detach() for n in self.param_names}

    def _state(self, params: dict[str, Tensor] | None) -> dict[str, Tensor]:
        state = {f"model.{n}": p for n, p in (params or {}).items()}
        # cloned buffers: a training-mode forward (BatchNorm) updates these copies
        for n, b in self.model.named_buffers():
            state[f"model.{n}"] = b.clone()
        return state

    # ------------------------------------------------------------ batched evaluations

    def loss_output(self, params: dict[str, Tensor] | None, batch: Any) -> LossOutput:
        """task.loss at ``params`` (None: the live parameters, e.g. θ_t before the optimizer
        step, without swapping anything in); differentiable with ordinary autograd when
        ``params`` require grad."""
        state = self._state(params)
        if not state:  # live parameters and no buffer to protect: the plain call
            return self._module(batch)
        return functional_call(self._module, state, (batch,))

    def mean_loss(self, params: dict[str, Tensor], batch: Any) -> Tensor:
        out = self.loss_output(params, batch)
        return out.sum.float() / out.count

    def sample_losses(self, params: dict[str, Tensor], batch: Any) -> Tensor:
        """(B,) each sample's mean loss, differentiable. From ``LossOutput.per_sample`` in one
        batched forward when the task provides it (assuming each sample holds count / B
        targets, true for classification and fixed-length windows); otherwise one sample
        at a time under vmap."""
        if self._has_per_sample is not False:
            out = self.loss_output(params, batch)
            if out.per_sample is not None:
                self._has_per_sample = True
                n = out.per_sample.shape[0]
                return out.per_sample.float() * (n / out.count)
            self._has_per_sample = False
        dims = batch_dims(batch)

        def one(p: dict[str, Tensor], sample: Any) -> Tensor:
            return self.mean_loss(p, unsqueeze(sample, dims))

        with self.per_sample_mode():
            return vmap(one, in_dims=(None, dims), randomness="different")(params, batch)

    def line(
        self, params: dict[str, Tensor], batch: Any, direction: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Per-sample losses ℓ_i (B,) at ``params`` and their slopes ∇ℓ_i·direction (B,).

        The slopes come from two reverse passes (the double-backward trick), so this works
        for every model autograd can train, BatchNorm in training mode included: with
        L(u) = Σ_i u_i ℓ_i, ∂/∂u [∇_θ L(u) · d] = (∇ℓ_i · d)_i.
        """
        p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
        with torch.enable_grad():
            losses = self.sample_losses(p, batch)  # (B,)
            u = torch.ones_like(losses, requires_grad=True)  # any value: L(u) is linear in u
            names = list(p)
            grads = torch.autograd.grad(
                (losses * u).sum(), [p[n] for n in names], create_graph=True, allow_unused=True
            )
            dot = sum(
                (
                    (g * direction[n]).sum()
                    for n, g in zip(names, grads, strict=True)
                    if g is not None
                ),
                start=torch.zeros((), device=losses.device),
            )
            if not dot.requires_grad:  # the loss does not depend on the parameters along d
                return losses.detach(), torch.zeros_like(losses)
            (slopes,) = torch.autograd.grad(dot, u)
        return losses.detach(), slopes.detach()

    # ------------------------------------------------------------ per-sample gradients

    def per_sample_grads(
        self, params: dict[str, Tensor], batch: Any
    ) -> tuple[dict[str, Tensor], Tensor]:
        """name -> (B, *shape) gradients of each sample's mean loss, and the (B,) losses,
        in one vmap over grad (no Python loop over samples)."""
        dims = batch_dims(batch)

        def one(p: dict[str, Tensor], sample: Any) -> Tensor:
            return self.mean_loss(p, unsqueeze(sample, dims))

        with self.per_sample_mode():
            grads, losses = vmap(grad_and_value(one), in_dims=(None, dims), randomness="different")(
                {n: t.detach() for n, t in params.items()}, batch
            )
        return grads, losses.detach()

    @contextmanager
    def per_sample_mode(self) -> Iterator[None]:
        """BatchNorm on its running statistics while per-sample functions run (a batch of
        one has no batch statistics); the training flags are restored afterwards."""
        mods = [m for m in self.model.modules() if isinstance(m, _BatchNorm) and m.training]
        for m in mods:
            m.train(False)
        try:
            with warnings.catch_warnings():
                # ops without a vmap batching rule (e.g. CPU flash attention) run torch's
                # per-sample fallback: slower, still correct; documented, not repeated per step
                warnings.filterwarnings("ignore", message="There is a performance drop")
                yield
        finally:
            for m in mods:
                m.train(True)

    # ------------------------------------------------------------ curvature

    def curvature(self, params: dict[str, Tensor], batch: Any) -> Curvature:
        return Curvature(self, params, batch)


class Curvature:
    """Hessian-vector products of the batch loss at fixed parameters.

    The gradient is built once with ``create_graph=True``; each product is then one more
    backward pass through that graph (Pearlmutter 1994), so a power iteration of k steps
    costs one forward and k + 1 backward passes. The graph is freed with this object.
    """

    def __init__(self, fm: FunctionalModel, params: dict[str, Tensor], batch: Any) -> None:
        self.names = list(params)
        self._p = [params[n].detach().requires_grad_(True) for n in self.names]
        with torch.enable_grad():
            loss = fm.mean_loss(dict(zip(self.names, self._p, strict=True)), batch)
            grads = torch.autograd.grad(loss, self._p, create_graph=True, allow_unused=True)
        # parameters the gradient does not depend on have a zero Hessian block
        self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self._grads = [grads[i] for i in self._live]
        self.loss = loss.detach()

    def hvp(self, v: dict[str, Tensor]) -> dict[str, Tensor]:
        """H v for one vector (name -> tensor shaped like the parameter)."""
        out = {n: torch.zeros_like(p) for n, p in zip(self.names, self._p, strict=True)}
        if not self._live:
            return out
        hv = torch.autograd.grad(
            self._grads,
            [self._p[i] for i in self._live],
            [v[self.names[i]] for i in self._live],
            retain_graph=True,
            allow_unused=True,
        )
        for i, h in zip(self._live, hv, strict=True):
            if h is not None:
                out[self.names[i]] = h.detach()
        return out

    def hvp_many(self, vs: dict[str, Tensor]) -> dict[str, Tensor]:
        """H v for m vectors at once (name -> (m, *shape)), batched with vmap over the
        backward pass (``is_grads_batched``); falls back to a loop over the m vectors
        when some operation has no batching rule."""
        m = next(iter(vs.values())).shape[0]
        out = {n: torch.zeros_like(vs[n]) for n in self.names}
        if not self._live:
            return out
        live_p = [self._p[i] for i in self._live]
        try:
            hv = torch.autograd.grad(
                self._grads,
                live_p,
                [vs[self.names[i]] for i in self._live],
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
            for i, h in zip(self._live, hv, strict=True):
                if h is not None:
                    out[self.names[i]] = h.detach()
        except RuntimeError:
            for j in range(m):
                one = self.hvp({n: vs[n][j] for n in self.names})
                for n in self.names:
                    out[n][j] = one[n]
        return out


# ---------------------------------------------------------------- batch structure


def batch_dims(batch: Any, n: int | None = None) -> Any:
    """The vmap ``in_dims`` of a batch: 0 for tensors whose leading dimension is the batch
    size, None for everything else (scalars, strings, constants)."""
    n = batch_len(batch) if n is None else n
    if isinstance(batch, Tensor):
        return 0 if batch.ndim >= 1 and batch.shape[0] == n else None
    if isinstance(batch, tuple | list):
        return type(batch)(batch_dims(b, n) for b in batch)
    if isinstance(batch, dict):
        return {k: batch_dims(v, n) for k, v in batch.items()}
    return None


def unsqueeze(sample: Any, dims: Any) -> Any:
    """Inside vmap: give each batched tensor of one sample back a batch dimension of 1."""
    if isinstance(sample, Tensor):
        return sample.unsqueeze(0) if dims == 0 else sample
    if isinstance(sample, tuple | list):
        return type(sample)(unsqueeze(s, d) for s, d in zip(sample, dims, strict=True))
    if isinstance(sample, dict):
        return {k: unsqueeze(v, dims[k]) for k, v in sample.items()}
    return sample


def take(batch: Any, k: int) -> Any:
    """The first ``k`` samples of a batch (tensors with the batch dimension are sliced)."""
    n = batch_len(batch)
    if k >= n:
        return batch

    def cut(obj: Any) -> Any:
        if isinstance(obj, Tensor):
            return obj[:k] if obj.ndim >= 1 and obj.shape[0] == n else obj
        if isinstance(obj, tuple | list):
            return type(obj)(cut(o) for o in obj)
        if isinstance(obj, dict):
            return {key: cut(v) for key, v in obj.items()}
        return obj

    return cut(batch)

