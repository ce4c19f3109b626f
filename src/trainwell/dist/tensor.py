"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019) for the reference GPT, through
``torch.distributed.tensor.parallel``: each block's attention and MLP are split across
the ranks of a tensor-parallel group, column-parallel first and row-parallel second, so
that each half of a block costs one all-reduce of its (B, T, C) output in the forward and
one of its input's gradient in the backward.

The plan (which module is split how) lives here, not in the model: models stay plain.

- ``attn.qkv`` and ``mlp.fc``: column parallel (each rank holds a block of output rows:
  whole heads, since the GPT groups the qkv rows by head; a quarter of the MLP's hidden units).
- ``attn.proj`` and ``mlp.proj``: row parallel (each rank holds the matching input
  columns; their partial outputs are summed by one all-reduce).
- ``wte`` (the token embedding) row parallel over the vocabulary, and ``lm_head`` column
  parallel over the vocabulary with its logits gathered: both shard the one (V, C) matrix
  on its first dimension, so the tied head stays tied (the same sharded parameter).
- Norms (and the learned positions): every rank holds them whole, as replicated DTensors,
  so that the gradient norm, clipping and the optimizer see one kind of parameter. The
  QK-norm gains see only their rank's heads: their gradients are summed across the group.
- With ``sequence_parallel`` (Korthikanti et al. 2022) the norms and the residual stream
  between blocks are split along the sequence: the all-reduce after each row-parallel layer
  becomes a reduce-scatter and the one before each column-parallel layer an all-gather (the
  same bytes), and the norms' activations take 1/tp of the memory.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import (
    DTensor,
    Placement,
    Replicate,
    Shard,
    distribute_module,
    distribute_tensor,
)
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    parallelize_module,
)

from trainwell.errors import ConfigError


class ReplicatedParams(ParallelStyle):
    """A module every rank of the group holds whole (a norm, the learned positions): its
    parameters become replicated DTensors, its input is read as a DTensor with
    ``input_layout`` (Replicate, or Shard(d) where each rank holds a slice of it), and its
    output is redistributed to ``output_layout`` (when given) and handed on as a plain local
    tensor (or as the DTensor, ``local_output=False``). DTensor then sums the parameters'
    gradients over the group where the input was sharded, and leaves them alone where it
    was whole."""

    def __init__(self, input_layout: Placement, output_layout: Placement | None = None,
                 local_output: bool = True) -> None:
        super().__init__()
        self.input_layout = input_layout
        self.output_layout = output_layout
        self.local_output = local_output

    @staticmethod
    def _replicate(name: str, module: nn.Module, mesh: DeviceMesh) -> None:
        for p_name, param in list(module.named_parameters(recurse=False)):
            module.register_parameter(p_name, nn.Parameter(distribute_tensor(param, mesh, [Replicate()])))

    @staticmethod
    def _input(layout: Placement, module: nn.Module, inputs: tuple[Any, ...], mesh: DeviceMesh) -> tuple[Any, ...]:
        x = inputs[0]
        x = x.redistribute(mesh, [layout]) if isinstance(x, DTensor) else DTensor.from_local(x, mesh, [layout], run_check=False)
        return (x, *inputs[1:])

    @staticmethod
    def _output(layout: Placement | None, local: bool, module: nn.Module, out: Tensor, mesh: DeviceMesh) -> Tensor:
        if layout is not None and isinstance(out, DTensor) and out.placements != (layout,):
            out = out.redistribute(mesh, [layout])
        return out.to_local() if local and isinstance(out, DTensor) else out

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(module, device_mesh, self._replicate, partial(self._input, self.input_layout),
                                 partial(self._output, self.output_layout, self.local_output))


def gpt_plan(model: nn.Module, sequence_parallel: bool) -> dict[str, ParallelStyle]:
    """The tensor-parallel plan of trainwell's GPT (models/gpt.py), module name -> style."""
    # The residual stream between layers: whole on every rank, or (sequence parallel) split
    # along T and kept a DTensor, which knows the global length when T does not divide evenly
    # (generation grows the sequence one token at a time)
    sp = sequence_parallel
    between = Shard(1) if sp else Replicate()  # (B, T, C): dimension 1 is the sequence
    plan: dict[str, ParallelStyle] = {
        "wte": RowwiseParallel(input_layouts=Replicate(), output_layouts=between, use_local_output=not sp),
        # a norm whose input is split along T hands its output on as a DTensor: the column-parallel
        # layer after it gathers it, and the backward turns that gather into a reduce-scatter
        "norm_f": ReplicatedParams(between, Replicate(), local_output=not sp),
        # the logits (B, T, V) gathered whole on every rank: the task's loss stays plain
        "lm_head": ColwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    }
    if getattr(model, "wpe", None) is not None:
        # (T, C) positions: their sequence dimension is the first
        plan["wpe"] = ReplicatedParams(Replicate(), Shard(0) if sp else Replicate(), local_output=not sp)
    for i, block in enumerate(model.blocks):  # type: ignore[union-attr]
        b = f"blocks.{i}"
        plan[f"{b}.norm1"] = ReplicatedParams(between, Replicate(), local_output=not sp)
        plan[f"{b}.attn.qkv"] = ColwiseParallel()
        plan[f"{b}.attn.proj"] = RowwiseParallel(output_layouts=between, use_local_output=not sp)
        if block.attn.q_norm is not None:
            # (B, H, T, D): each rank holds its heads; one gain shared by all heads
            plan[f"{b}.attn.q_norm"] = ReplicatedParams(Shard(1))
            plan[f"{b}.attn.k_norm"] = ReplicatedParams(Shard(1))
        plan[f"{b}.norm2"] = ReplicatedParams(between, Replicate(), local_output=not sp)
        plan[f"{b}.mlp.fc"] = ColwiseParallel()
        plan[f"{b}.mlp.proj"] = RowwiseParallel(output_layouts=between, use_local_output=not sp)
    return plan


def plan_problems(model: nn.Module, tp: int) -> list[str]:
    """Why ``model`` cannot be split ``tp`` ways (empty: it can)."""
    from trainwell.models.gpt import GPT

    if not isinstance(model, GPT):
        return [f"dist.tensor_parallel = {tp}: tensor parallelism has a plan for trainwell's GPT "
                f"(model.kind = 'gpt') only, not for {type(model).__name__}; use dist.parallel = "
                "'fsdp' without tensor_parallel to spread this model"]
    problems = []
    if model.heads % tp:
        problems.append(f"model.heads ({model.heads}) must be divisible by dist.tensor_parallel ({tp}): "
                        "each rank computes whole attention heads")
    if model.vocab_size % tp:
        problems.append(f"the vocabulary ({model.vocab_size} tokens) must be divisible by "
                        f"dist.tensor_parallel ({tp}): the embedding and the head are split over it")
    return problems


def parallelize(model: nn.Module, mesh: DeviceMesh, sequence_parallel: bool) -> nn.Module:
    """Split ``model`` over the 1-D tensor-parallel ``mesh`` in place (every rank calls it,
    with identical initial weights) and return it."""
    problems = plan_problems(model, mesh.size())
    if problems:
        raise ConfigError(problems)
    tied = model.lm_head.weight is model.wte.weight  # type: ignore[union-attr]
    parallelize_module(model, mesh, gpt_plan(model, sequence_parallel))
    if tied:  # each style made its own Parameter of the one (V, C) matrix: tie them again
        model.lm_head.weight = model.wte.weight  # type: ignore[union-attr]
    return model
