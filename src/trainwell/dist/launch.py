"""``trainwell train --nproc N``: start N local processes through torchrun
(``python -m torch.distributed.run``), each running ``trainwell train`` with the same
arguments, and wait for them.

torchrun does the rest: rendezvous, the environment each rank reads (dist/context.py),
and with ``--max-restarts K`` elastic restarts (when a rank dies, torchrun stops the
others and starts the group again; the ranks then resume from the newest valid checkpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from trainwell.dist.context import launched_by_torchrun, restart_count
from trainwell.errors import ConfigError


def torchrun_command(nproc: int, max_restarts: int, child_args: list[str]) -> list[str]:
    """The torchrun command line for one node (``--standalone``: a local rendezvous on a
    free port). Multi-node runs call torchrun themselves (docs/distributed.md)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    if max_restarts:
        cmd.append(f"--max-restarts={max_restarts}")
    return [*cmd, "-m", "trainwell", *child_args]


def worker_env(nproc: int) -> dict[str, str]:
    """The processes share this machine's cores: give each its part (at least one thread)
    unless the user set OMP_NUM_THREADS. Several ranks with all cores each oversubscribe
    the CPU and run far slower than one thread per rank."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def launch(nproc: int, max_restarts: int, child_args: list[str]) -> int:
    """Run torchrun in the foreground; SIGTERM/SIGINT go to it (it stops the ranks, which
    save a checkpoint). Returns its exit code."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if launched_by_torchrun():
        raise ConfigError("--nproc starts torchrun, but this process already runs under torchrun; "
                          "drop --nproc (torchrun's --nproc-per-node says how many)")
    child = subprocess.Popen(torchrun_command(nproc, max_restarts, child_args), env=worker_env(nproc))

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def elastic_resume(run_dir: str | Path | None, resume: bool) -> bool:
    """Whether this rank must resume: asked for, or torchrun restarted the group after a
    rank died (TORCHELASTIC_RESTART_COUNT > 0). An elastic run needs a fixed --run-dir so
    that the restarted ranks find the checkpoints of the first attempt."""
    from trainwell.dist.context import elastic

    if (elastic() or restart_count()) and run_dir is None:
        raise ConfigError("torchrun --max-restarts restarts the ranks from the newest checkpoint: "
                          "pass --run-dir DIR so that they find it (trainwell train --nproc does this for you)")
    return resume or restart_count() > 0
