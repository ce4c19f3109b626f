"""Distributed training under torchrun: process groups, DDP / FSDP2 wrapping, the sharded
batch, the collectives of the step, sharded checkpoints and the ``--nproc`` launcher.

The loop and the step see only a ``DistContext`` (None for a single process) and call it
at explicit points; models stay plain."""

from trainwell.dist.config import DistConfig
from trainwell.dist.context import DistContext, DistributedError, setup

__all__ = ["DistConfig", "DistContext", "DistributedError", "setup"]
