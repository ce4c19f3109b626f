"""Exponential moving average of the weights, evaluated beside the raw weights.

One process and DDP keep the average in ``torch.optim.swa_utils.AveragedModel``: a deep
copy of the model. A model whose parameters are DTensors (FSDP2, tensor parallel) cannot be
copied whole, so ``ShardedEMA`` keeps one shadow tensor per parameter and buffer instead,
with the same placements: each process averages only the shard it holds. Both apply the
same arithmetic (``get_ema_multi_avg_fn``): the first update copies the weights, each later
one moves the average toward them by ``1 - decay`` (``torch._foreach_lerp_``), buffers
(BatchNorm running statistics) included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def build_ema(model: nn.Module, decay: float) -> AveragedModel | ShardedEMA | None:
    """The EMA of ``model`` (None when ``decay`` is 0): sharded when its parameters are."""
    if decay <= 0:
        return None
    if is_sharded(model):
        return ShardedEMA(model, decay)
    # use_buffers: BatchNorm running statistics are averaged too, so the EMA model evaluates
    # with statistics that match its weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is a DTensor (FSDP2, tensor parallel)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


@contextmanager
def ema_weights(ema: AveragedModel | ShardedEMA, model: nn.Module) -> Iterator[nn.Module]:
    """The module that computes with the EMA weights, for the duration of the block: the
    AveragedModel's copy, or ``model`` itself with the sharded averages swapped in."""
    if isinstance(ema, ShardedEMA):
        with ema.swapped_into(model):
            yield model
    else:
        yield ema.module


class ShardedEMA:
    """The EMA of a model with sharded (DTensor) parameters: a shadow per parameter and
    buffer, a DTensor with the same mesh and placements where the original is one.

    ``update_parameters(model)`` after each applied optimizer step; ``swapped_into(model)``
    to evaluate with the averages; ``state_dict()`` maps the model's state-dict names to the
    shadows (sharded checkpoints save and load them in place, dist/sharded.py);
    ``n_averaged`` counts the updates, as AveragedModel's does."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.average = get_ema_multi_avg_fn(decay)
        live = _tensors(model)
        with torch.no_grad():
            self.shadows = [t.detach().clone() for t in live]
        index = {id(t): i for i, t in enumerate(live)}
        # tied weights: several names, one shadow; non-persistent buffers: averaged, not saved
        self.names = {name: index[id(t)] for name, t in model.state_dict(keep_vars=True).items()}
        self.n_averaged = torch.tensor(0, dtype=torch.long)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (each process its shards)."""
        _reshard(model)
        shadows, live = self._local_pairs(model)
        if self.n_averaged == 0:
            torch._foreach_copy_(shadows, live)
        else:
            for dtype in dict.fromkeys(s.dtype for s in shadows):  # AveragedModel's grouping
                group = [i for i, s in enumerate(shadows) if s.dtype == dtype]
                self.average([shadows[i] for i in group], [live[i] for i in group], self.n_averaged)
        self.n_averaged += 1

    @contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` computing with the averages: their values and the model's are exchanged
        in place on entry and again on exit (every process together; bit for bit)."""
        _reshard(model)
        self._exchange(model)
        try:
            yield model
        finally:
            _reshard(model)
            self._exchange(model)

    def state_dict(self) -> dict[str, Tensor]:
        """The model's state-dict names -> the shadows themselves (loading fills them in place)."""
        return {name: self.shadows[i] for name, i in self.names.items()}

    @torch.no_grad()
    def _exchange(self, model: nn.Module) -> None:
        for shadow, live in zip(*self._local_pairs(model), strict=True):
            held = live.clone()
            live.copy_(shadow)
            shadow.copy_(held)

    def _local_pairs(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """(the shadows' local shards, the model's matching local shards)."""
        live = _tensors(model)
        if len(live) != len(self.shadows):
            raise ValueError(f"the EMA holds {len(self.shadows)} tensors, the model {len(live)}: "
                             "not the model it averages")
        return [_local(s) for s in self.shadows], [_local(t.detach()) for t in live]


def _tensors(model: nn.Module) -> list[Tensor]:
    """The parameters, then the buffers (each once), in the order AveragedModel pairs them."""
    return list(chain(model.parameters(), model.buffers()))


def _local(t: Tensor) -> Tensor:
    """This process's shard of a DTensor (a view: writing it writes the DTensor); other
    tensors unchanged."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def _reshard(model: nn.Module) -> None:
    """Free the gathered weights of every FSDP2 unit. A unit that keeps its weights gathered
    after a forward (``dist.fsdp_reshard_after_forward = false``, or FSDP2's default for the
    root) lists the gathered tensors as its parameters, and its next forward would compute
    with them: resharded, the parameters are the shards again, and the next forward gathers
    their current values. No communication; a no-op for other models."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
