"""FSDP2 checkpoints: the sharded weights and optimizer state through
``torch.distributed.checkpoint`` (DCP); the rest of the training state through the store.

Each rank writes its own shards into ``checkpoints/sharded/step-XXXXXXXX/`` (DCP's format:
one file per rank plus ``.metadata``); then rank 0 writes the store's checkpoint
(``checkpoints/step-XXXXXXXX/``: step counters, sampler, RNG, autopilot) whose manifest
names the sharded directory. The store commits last, so a valid store checkpoint means
its shards were complete. DCP loads into the current sharding, which may differ from the
one that saved (another world size): it re-shards on load. ``consolidate`` turns a
sharded checkpoint into one ``torch.save`` file for use without torch.distributed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

SHARDED_DIR = "sharded"


class ShardedWeights:
    """Save and load the model and optimizer of an FSDP2 run with DCP (collective calls:
    every rank calls them together)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, root: Path) -> None:
        self.model, self.optimizer = model, optimizer
        self.root = Path(root) / SHARDED_DIR

    def path_for(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def save(self, step: int) -> str:
        """Write this rank's shards of step ``step``; returns the directory relative to the
        checkpoints root (recorded in the store's manifest)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        path = self.path_for(step)
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(path))
        return f"{SHARDED_DIR}/{path.name}"

    def load(self, relative: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        state = {"model": model_sd, "optimizer": optim_sd}
        dcp.load(state, checkpoint_id=str(self.root.parent / relative))
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])

    def prune(self, keep: set[int]) -> None:
        """Remove sharded directories whose store checkpoint is gone (retention removed it).
        Rank 0 only, after its save."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            name = path.name
            if name.startswith("step-") and name[5:].isdigit() and int(name[5:]) not in keep:
                shutil.rmtree(path, ignore_errors=True)


def consolidate(sharded_dir: str | Path, out_file: str | Path) -> None:
    """One ``torch.save`` file with the full (unsharded) model and optimizer state of a
    sharded checkpoint; runs in a single process, no process group needed."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(sharded_dir), str(out_file))
