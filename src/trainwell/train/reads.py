"""The step's one host read, by name, and the world of one process.

Every scalar a step needs on the host (loss sums, target counts, the grad norm, the input
and activation norms...) is collected here on the device and read in one transfer: one
host sync a step. Across processes, the values every rank must judge are all-gathered
first, so that every rank reduces the same table the same way and reaches the same verdict.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


class OneProcess:
    """The step's collectives in a world of one: no communication, the same arithmetic as
    ``DistContext``'s (dist/context.py), so that the step has a single code path."""

    world = 1

    def grad_sync(self, model: nn.Module, last: bool) -> Any:
        return nullcontext()

    def loss_divisor(self, first_count: Tensor | float, k: int) -> Tensor | float:
        return first_count * k

    def grad_correction(self, divisor: Tensor | float, total: Tensor) -> Tensor:
        return divisor / total

    def gather_scalars(self, row: list[Tensor]) -> Tensor:
        return torch.stack(row).unsqueeze(0)  # (1, n)

    def rows(self, flat: list[float], n: int) -> list[list[float]]:
        return [flat[:n]]

    def agree_stop(self, requested: bool) -> bool:
        return requested


ONE_PROCESS = OneProcess()


class HostReads:
    """The step's scalars by name, read to the host in ONE transfer (the step's only sync).

    ``share``: values every rank must see from every rank (loss sums, target counts...):
    they travel in one all_gather (``gather``, no sync), so that every rank reduces the
    same table the same way and reaches the same verdict. ``add``: values that are already
    the same on every rank (the global grad norm, the loss scale)."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.shared: dict[str, list[Tensor]] = {}
        self.local: dict[str, Tensor] = {}
        self.table: Tensor | None = None
        self.slices: dict[str, slice] = {}
        """Each shared name's columns in ``table``, set by ``gather``."""

    def share(self, name: str, values: list[Tensor | float]) -> None:
        self.shared[name] = [torch.as_tensor(v) for v in values]

    def gather(self, device: torch.device) -> Tensor:
        """(world, n) table of every rank's shared values, on the device."""
        at = 0
        for key, vs in self.shared.items():
            self.slices[key] = slice(at, at + len(vs))
            at += len(vs)
        row = [v.to(device).reshape(()) for vs in self.shared.values() for v in vs]
        self.table = self.comm.gather_scalars(row)
        return self.table

    def columns(self, name: str) -> Tensor:
        """The table's columns of ``name`` (world, len), on the device."""
        return self.table[:, self.slices[name]]

    def add(self, name: str, value: Tensor) -> None:
        self.local[name] = value.reshape(())

    def read(self) -> Reads:
        """Every value on the host, by name: the one ``tolist()`` of the step."""
        flat = torch.cat([self.table.flatten(), *(v.reshape(1) for v in self.local.values())]).tolist()
        n_table = self.table.numel()
        rows = self.comm.rows(flat[:n_table], sum(len(vs) for vs in self.shared.values()))
        per_rank = {key: [row[cols] for row in rows] for key, cols in self.slices.items()}
        return Reads(per_rank, dict(zip(self.local, flat[n_table:], strict=True)))


@dataclass
class Reads:
    per_rank: dict[str, list[list[float]]]
    """name -> one list of values per rank."""
    local: dict[str, float]

    def total(self, name: str) -> float:
        """The values of ``name`` summed over micro-batches, then over ranks."""
        return sum(sum(row) for row in self.per_rank[name])
