"""Model wrapping: DDP (a replica per rank) or FSDP2 (``fully_shard``, sharded per block),
the latter optionally over tensor-parallel groups (dist/tensor.py).

Models stay plain (no distributed code in models/); this is the one place that knows.
"""

from __future__ import annotations

import torch
from torch import nn

from trainwell.dist.config import DistConfig
from trainwell.dist.context import DistContext

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def wrap_model(model: nn.Module, ctx: DistContext, cfg: DistConfig, precision: str) -> nn.Module:
    """DDP or FSDP2 around ``model`` (already on ``ctx.device``). FSDP2 must wrap before the
    optimizer is built: it turns the parameters into sharded DTensors in place."""
    if ctx.parallel == "fsdp":
        return shard_model(model, ctx, cfg, precision)
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # broadcast_buffers: BatchNorm statistics follow rank 0, so every replica evaluates alike
    return DistributedDataParallel(model, device_ids=ids)


def shard_model(model: nn.Module, ctx: DistContext, cfg: DistConfig, precision: str) -> nn.Module:
    """``fully_shard`` each block, then the root (torchtitan's recipe): a block's parameters
    are gathered just before it runs and freed after, so peak memory is one block's weights
    plus the shards. Blocks are the children of the model's largest nn.ModuleList (the
    transformer layers), or, without one, every direct child that holds parameters.

    With ``dist.tensor_parallel`` the model is first split within each tensor-parallel group
    (dist/tensor.py) and FSDP2 shards across the groups (with one group, FSDP2's collectives
    span one process each and move nothing)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    param = cfg.fsdp_param_dtype
    if param == "auto":
        param = "bf16" if precision == "bf16" else "fp32"
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[param], reduce_dtype=DTYPES[cfg.fsdp_reduce_dtype])
    if ctx.tp > 1:  # 2-D: tensor parallel within each group, FSDP2 across the groups
        from trainwell.dist.tensor import parallelize

        grid = init_device_mesh(ctx.device.type, (ctx.world, ctx.tp), mesh_dim_names=("dp", "tp"))
        # the global gradient norm reduces over both dimensions: with the grid flattened, DTensor
        # does it in one all-reduce instead of two in a row
        grid[("dp", "tp")]._flatten()
        parallelize(model, grid["tp"], cfg.sequence_parallel)
        mesh = grid["dp"]
    else:
        mesh = init_device_mesh(ctx.device.type, (ctx.world,))
    if policy.param_dtype is not torch.float32:
        # norms compute in fp32 (models/norms.py) and layer_norm refuses bf16 gains beside an
        # fp32 input: each norm is its own unit whose gains stay fp32 (a few bytes to gather)
        fp32 = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=DTYPES[cfg.fsdp_reduce_dtype])
        for norm in [m for m in model.modules() if isinstance(m, nn.LayerNorm | nn.RMSNorm)]:
            fully_shard(norm, mesh=mesh, mp_policy=fp32, reshard_after_forward=cfg.fsdp_reshard_after_forward)
    for block in shard_units(model):
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.fsdp_reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.fsdp_reshard_after_forward)
    return model


def shard_units(model: nn.Module) -> list[nn.Module]:
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if lists:
        biggest = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
        return list(biggest)
    return [c for c in model.children() if any(True for _ in c.parameters())]
