"""FSDP2 checkpoints: the sharded weights, optimizer state and EMA weights through
``torch.distributed.checkpoint`` (DCP); the rest of the training state through the store.

Each rank writes its own shards into ``checkpoints/sharded/step-XXXXXXXX/`` (DCP's format:
one file per rank plus ``.metadata``); then rank 0 writes the store's checkpoint
(``checkpoints/step-XXXXXXXX/``: step counters, sampler, RNG, autopilot) whose manifest
names the sharded directory. The store commits last, so a valid store checkpoint means
its shards were complete. DCP loads into the current sharding, which may differ from the
one that saved (another world size): it re-shards on load. ``consolidate`` turns a
sharded checkpoint into one ``torch.save`` file for use without torch.distributed.

The parts of a sharded checkpoint: ``model`` and ``optimizer`` (``get_state_dict``'s), and,
when the run keeps an EMA, ``ema``: the shadow of every model tensor under the model's
state-dict names (train/ema.py's ShardedEMA), so that its consolidated form loads into the
plain model as the ``model`` part does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from trainwell.train.ema import ShardedEMA

SHARDED_DIR = "sharded"


class ShardedWeights:
    """Save and load the model, optimizer and EMA of an FSDP2 run with DCP (collective
    calls: every rank calls them together)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, root: Path,
                 ema: ShardedEMA | None = None) -> None:
        self.model, self.optimizer, self.ema = model, optimizer, ema
        self.root = Path(root) / SHARDED_DIR

    def path_for(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def save(self, step: int) -> str:
        """Write this rank's shards of step ``step``; returns the directory relative to the
        checkpoints root (recorded in the store's manifest)."""
        import torch.distributed.checkpoint as dcp

        path = self.path_for(step)
        dcp.save(self._parts(), checkpoint_id=str(path))
        return f"{SHARDED_DIR}/{path.name}"

    def load(self, relative: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = self._parts()
        dcp.load(state, checkpoint_id=str(self.root.parent / relative))  # the EMA's shadows in place
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])

    def _parts(self) -> dict[str, dict]:
        """The checkpoint's parts, as DCP saves them and loads into them."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        parts = {"model": model_sd, "optimizer": optim_sd}
        if self.ema is not None:
            parts["ema"] = self.ema.state_dict()
        return parts

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
    """One ``torch.save`` file with the full (unsharded) model and optimizer state (and EMA
    weights, under ``"ema"``, when the run kept them) of a sharded checkpoint; runs in a
    single process, no process group needed."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(sharded_dir), str(out_file))
