"""Who am I in the process group: the context torchrun's environment describes, its setup
and teardown, and the few collectives the loop and the step need.

torchrun exports WORLD_SIZE, RANK, LOCAL_RANK (and, for elastic runs,
TORCHELASTIC_RESTART_COUNT / TORCHELASTIC_MAX_RESTARTS). Without them the run is a single
process and ``setup`` returns None: the single-process path makes no collective at all.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from trainwell.errors import ConfigError, TrainwellError

if TYPE_CHECKING:
    from trainwell.config import RunConfig


class DistributedError(TrainwellError):
    """The processes of a distributed run disagree (diverged replicas, a bad launch)."""


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def restart_count() -> int:
    """How many times torchrun has restarted this group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def elastic() -> bool:
    """Whether torchrun will restart the group when a rank dies (``--max-restarts`` > 0)."""
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0


@dataclass
class DistContext:
    rank: int
    """The data-parallel rank: which slice of each global batch this process trains on (the
    process rank without tensor parallelism; the processes of a tensor-parallel group share one)."""
    world: int
    """The data-parallel size: how many slices each global batch is cut into."""
    local_rank: int
    parallel: str
    """'ddp' or 'fsdp'."""
    backend: str
    device: torch.device
    restart: int = 0
    """torchrun's restart count: > 0 means this group resumes after a rank died."""
    tp: int = 1
    """Processes per tensor-parallel group (dist.tensor_parallel); 1 = none."""
    process: int = -1
    """This process's rank among all processes (torchrun's RANK); -1 = ``rank`` (no tensor parallelism)."""
    stop_agreed: bool = False
    """A stop (SIGTERM/SIGINT) requested on any rank, as agreed at the last step's gather."""
    clock_agreed: bool = False
    """Rank 0's answer to the wall-clock question (a timed checkpoint due), as of the last
    step's gather."""
    _stop_local: bool = False
    _clock_local: bool = False
    _owns_group: bool = False

    def __post_init__(self) -> None:
        if self.process < 0:
            self.process = self.rank

    @property
    def main(self) -> bool:
        """Process 0 writes the run directory: sinks, report, logbook, checkpoints."""
        return self.process == 0

    @property
    def processes(self) -> int:
        """All processes: data-parallel size x tensor-parallel size."""
        return self.world * self.tp

    # ------------------------------------------------------------ the step's collectives

    def grad_sync(self, model: nn.Module, last: bool) -> Any:
        """Gradient accumulation without communication: only the last micro-batch's
        backward reduces gradients across ranks (DDP ``no_sync``; FSDP2's switch)."""
        if self.parallel == "fsdp":
            model.set_requires_gradient_sync(last)  # type: ignore[operator]
            return nullcontext()
        return nullcontext() if last else model.no_sync()  # type: ignore[operator]

    def loss_divisor(self, first_count: Tensor | float, k: int) -> Tensor:
        """What each rank divides its micro-batch loss sums by, the same on every rank: the
        first micro-batch's target count summed over ranks, times k, over the world size.
        DDP and FSDP average gradients over ranks, so the result is sum over ranks of the
        gradient sums / (global first count x k); the step's final correction turns it into
        sum / global target count (one all_reduce of one number). The processes of a
        tensor-parallel group hold the same batch: their sum counts it ``tp`` times (an
        integer, exact in float32)."""
        c = torch.as_tensor(first_count, dtype=torch.float32, device=self.device).reshape(1).clone()
        dist.all_reduce(c)
        return (c[0] / self.tp if self.tp > 1 else c[0]) * (k / self.world)

    def grad_correction(self, divisor: Tensor, global_total: Tensor) -> Tensor:
        """Scale that turns the averaged gradient into sum / global target count."""
        return divisor * self.world / global_total

    def gather_scalars(self, local: list[Tensor]) -> Tensor:
        """Every rank's packed step scalars, plus its stop and clock flags: (world, n + 2) on
        the device, one all_gather. Each rank then reduces the same table the same way, so every
        rank reaches the same verdict (a NaN on one rank is a NaN on all).

        Under tensor parallelism the processes of a group computed the same scalars from the
        same batch: their rows fold into one by an elementwise max (the value itself when they
        agree, NaN when any is NaN, a stop when any asked), one row per data-parallel rank."""
        flags = torch.tensor([float(self._stop_local), float(self._clock_local)], device=self.device)
        row = torch.cat([torch.stack([_plain(v).float().reshape(()) for v in local]), flags])  # (n + 2,)
        table = [torch.empty_like(row) for _ in range(self.processes)]
        dist.all_gather(table, row)
        if self.tp == 1:
            return torch.stack(table)  # (world, n + 2)
        # processes are numbered data-parallel rank x tp + tensor-parallel rank (the mesh's order)
        return torch.stack(table).view(self.world, self.tp, -1).amax(dim=1)  # (world, n + 2)

    def rows(self, flat: list[float], n: int) -> list[list[float]]:
        """Split the host copy of ``gather_scalars``' table into one row per rank and note
        whether any rank asked to stop, and rank 0's clock."""
        rows = [flat[r * (n + 2): (r + 1) * (n + 2)] for r in range(self.world)]
        self.stop_agreed = any(row[n] > 0 for row in rows)
        self.clock_agreed = rows[0][n + 1] > 0
        return [row[:n] for row in rows]

    def agree_stop(self, requested: bool) -> bool:
        """Stop together: a signal may reach the ranks at different steps, so the local flag
        travels with the next step's gather and every rank stops after the same step."""
        self._stop_local = requested
        return self.stop_agreed

    def agree_clock(self, local: bool) -> bool:
        """Rank 0's answer to a wall-clock question, the same on every rank (clocks differ
        between processes): ``local`` travels with the next step's gather, and the answer
        returned is rank 0's from this step's. No collective of its own, no extra sync. An
        agreed yes is acted on now, so the question is not asked again with it."""
        agreed = self.clock_agreed
        self._clock_local = local and not agreed
        return agreed

    def gather_objects(self, obj: Any) -> list[Any]:
        """Picklable objects from every data-parallel rank (rare paths only: quarantine,
        checks); under tensor parallelism, the first process of each group speaks for it."""
        out: list[Any] = [None] * self.processes
        dist.all_gather_object(out, obj)
        return out[::self.tp]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    # ------------------------------------------------------------ checks and failures

    def check_replicas(self, model: nn.Module, step: int) -> None:
        """DDP keeps one full replica per rank; if they ever differ, every later step is
        wrong. Compare a checksum of the weights across ranks (one tiny gather, at
        checkpoints only). FSDP shards are different by design and are not compared."""
        if self.parallel != "ddp":
            return
        with torch.no_grad():
            sums = [p.detach().double().sum() for p in model.parameters()]
            local = torch.stack(sums).sum().item() if sums else 0.0
        seen = self.gather_objects(local)
        if any(v != seen[0] and not (v != v and seen[0] != seen[0]) for v in seen):
            raise DistributedError(
                f"the model replicas differ across ranks at step {step} (weight checksums {seen}): "
                "the ranks took different decisions or saw different initial weights; the run "
                "cannot continue. Resume from the last checkpoint; please report this"
            )

    def log_failure(self, run_dir: Path | None, error: BaseException) -> None:
        """Every rank writes its own failure to ``run_dir/ranks/rank{N}.log`` (rank 0's
        logbook covers training events, not another rank's traceback)."""
        if run_dir is None:
            return
        try:
            folder = Path(run_dir) / "ranks"
            folder.mkdir(parents=True, exist_ok=True)
            text = "".join(traceback.format_exception(error))
            with open(folder / f"rank{self.process}.log", "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} rank {self.process}/{self.processes} "
                        f"(restart {self.restart}, pid {os.getpid()})\n{text}\n")
        except OSError:
            pass  # the traceback still reaches stderr, which torchrun prints

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()


def check_launch(cfg: RunConfig, nproc: int) -> None:
    """The problems ``setup`` would find on every rank of ``nproc`` processes, found before
    they start (``trainwell train --nproc``): a ConfigError listing all of them."""
    parallel = cfg.dist.parallel
    if parallel == "auto":
        parallel = "fsdp" if cfg.dist.tensor_parallel > 1 else "ddp" if nproc > 1 else "none"
    if parallel != "none" or cfg.dist.tensor_parallel > 1:
        _check_config(cfg, parallel, nproc)


def setup(cfg: RunConfig) -> DistContext | None:
    """The context for this process, with its process group initialised; None when the run
    is a single process. Config problems that depend on the world size are reported here,
    before any collective starts, on every rank alike."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    parallel, tp = cfg.dist.parallel, cfg.dist.tensor_parallel
    if parallel == "auto":
        parallel = "fsdp" if tp > 1 else "ddp" if world > 1 else "none"
    if parallel == "none" and tp == 1:
        if world > 1:
            raise ConfigError(f"dist.parallel = 'none', but torchrun started {world} processes: each "
                              "would train alone; use dist.parallel = 'auto', 'ddp' or 'fsdp'")
        return None
    if not launched_by_torchrun():
        raise ConfigError(f"dist.parallel = {parallel!r} needs processes started by torchrun: use "
                          "trainwell train --nproc N, or torchrun ... -m trainwell train CONFIG")
    _check_config(cfg, parallel, world)
    process, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg.train.device, local_rank)
    backend = cfg.dist.backend if cfg.dist.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("dist.backend = 'nccl' needs CUDA devices; use 'auto' or 'gloo' on CPU")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        timeout = timedelta(seconds=cfg.dist.timeout_s)
        store, _, _ = next(dist.rendezvous("env://", process, world, timeout=timeout))
        # a fresh key space per elastic attempt: torchrun's store outlives a restart, and
        # gloo would otherwise read the dead attempt's peer addresses (connection refused)
        store = dist.PrefixStore(f"trainwell/attempt-{restart_count()}", store)
        dist.init_process_group(backend, store=store, rank=process, world_size=world, timeout=timeout)
    # the data-parallel rank picks the batch slice: a tensor-parallel group shares one
    return DistContext(process // tp, world // tp, local_rank, parallel, backend, device, restart_count(),
                       tp=tp, process=process, _owns_group=owns)


@contextmanager
def failures_logged(ctx: DistContext | None, run_dir: Path | None) -> Iterator[None]:
    """Write any exception of this rank to its own log, then let it propagate."""
    try:
        yield
    except BaseException as e:
        if ctx is not None:
            ctx.log_failure(run_dir, e)
        raise


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' requested but no CUDA device is available; use auto or cpu")
        return torch.device(f"cuda:{local_rank}")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"train.device = {name!r}: under torchrun each process takes its own device "
                      "(cuda:LOCAL_RANK); use auto, cuda or cpu")


def _check_config(cfg: RunConfig, parallel: str, world: int) -> None:
    tp = cfg.dist.tensor_parallel
    problems = _tensor_parallel_problems(cfg, parallel, world) if tp > 1 else []
    replicas = world // tp if world % tp == 0 else world  # the data-parallel size
    who = "processes" if tp == 1 else "data-parallel ranks (processes / dist.tensor_parallel)"
    b, k = cfg.train.batch_size, cfg.train.accumulate
    if b % replicas:
        problems.append(f"train.batch_size ({b}) must be divisible by the number of {who} ({replicas}): "
                        "it is the global batch, split evenly over the ranks")
    elif b // replicas < k:
        problems.append(f"train.accumulate ({k}) must be <= train.batch_size / {who} ({b}/{replicas}): "
                        "each rank splits its share into accumulate micro-batches")
    if parallel == "fsdp":
        if cfg.precision == "fp16":
            problems.append("precision = 'fp16' is not supported with dist.parallel = 'fsdp' (the grad "
                            "scaler would see only its shard's overflows); use bf16 or fp32")
        if cfg.instruments.preset != "off" or cfg.instruments.include:
            problems.append("instruments.preset must be 'off' (and instruments.include empty) with "
                            "dist.parallel = 'fsdp' (instruments run extra forwards on rank 0 alone, "
                            "which sharded layers cannot)")
    if problems:
        raise ConfigError(problems)


def _tensor_parallel_problems(cfg: RunConfig, parallel: str, world: int) -> list[str]:
    tp = cfg.dist.tensor_parallel
    problems = []
    if world % tp:
        problems.append(f"dist.tensor_parallel ({tp}) must divide the number of processes ({world}): "
                        "the processes form a (data-parallel x tensor-parallel) grid")
    if parallel != "fsdp":
        problems.append(f"dist.parallel = {parallel!r} cannot be combined with dist.tensor_parallel = {tp}: "
                        "tensor parallelism runs inside FSDP2 (sharded across the data-parallel "
                        "dimension); use dist.parallel = 'fsdp' or 'auto'")
    if cfg.model.kind != "gpt":
        problems.append(f"dist.tensor_parallel = {tp}: tensor parallelism has a plan for the gpt only "
                        f"(model.kind = 'gpt'), not for model.kind = {cfg.model.kind!r}")
    elif cfg.model.heads % tp:
        problems.append(f"model.heads ({cfg.model.heads}) must be divisible by dist.tensor_parallel ({tp}): "
                        "each process computes whole attention heads")
    return problems


def _plain(t: Tensor) -> Tensor:
    """A DTensor's full value as a plain tensor (a scalar measured on tensor-parallel
    activations); other tensors unchanged."""
    full = getattr(t, "full_tensor", None)
    return full() if full is not None else t
