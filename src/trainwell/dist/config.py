"""The ``[dist]`` section: how a run launched by torchrun splits its work across processes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainwell.section import Section


class DistConfig(Section):
    parallel: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    """How the model is spread over the processes torchrun starts: ddp (a full replica per process, gradients averaged), fsdp (parameters, gradients and optimizer state sharded with FSDP2 fully_shard, for models that do not fit one device), none (a single process). 'auto' = ddp when more than one process is running, none otherwise: DDP is the fastest choice whenever the model fits; with tensor_parallel > 1, 'auto' = fsdp."""
    tensor_parallel: int = Field(1, ge=1)
    """Processes that split each layer of the model between them (Megatron-LM tensor parallelism, dist/tensor.py; the reference GPT only); they see the same batch. The processes form a (world / tensor_parallel) x tensor_parallel grid: FSDP2 shards across the data-parallel dimension, so dist.parallel must be 'fsdp' (or 'auto'). 1 = off: split layers only when one layer's weights and activations do not fit a device, since every block half costs an all-reduce of its activations."""
    sequence_parallel: bool = False
    """With tensor_parallel > 1: the norms and the residual stream between blocks are split along the sequence (Korthikanti et al. 2022): each all-reduce becomes a reduce-scatter plus an all-gather (the same bytes, twice the collectives), and those activations take 1 / tensor_parallel of the memory. Off by default: it pays when activation memory is the limit (long sequences, large batches), not for speed."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Collective backend. 'auto' = nccl when the processes train on CUDA devices, gloo on CPU (NCCL has no CPU support)."""
    timeout_s: int = Field(600, ge=10)
    """Seconds a collective may wait for the other ranks before the group fails. 600: long enough for a slow checkpoint write or evaluation on rank 0, short enough that a hung rank ends the run (and an elastic restart can begin) within minutes."""
    fsdp_param_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    """FSDP2 mixed precision: the dtype parameters are all-gathered and computed in. 'auto' = bf16 when the run's precision resolves to bf16, else fp32. The sharded master weights and the optimizer state stay fp32 either way."""
    fsdp_reduce_dtype: Literal["fp32", "bf16"] = "fp32"
    """FSDP2 mixed precision: the dtype gradients are reduce-scattered in. fp32 (torchtitan's default): summing bf16 gradients across many ranks loses bits that fp32 keeps, for twice the traffic."""
    fsdp_reshard_after_forward: bool = True
    """FSDP2: free the gathered parameters after the forward and gather them again for the backward (ZeRO-3, least memory). False keeps them until the backward (ZeRO-2 style: less communication, more memory)."""
