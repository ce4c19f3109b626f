"""kill -9 at a random moment of a save loop never costs the run its checkpoints.

A child process saves (and marks, and rotates) checkpoints in a tight loop; we SIGKILL it
at a random moment, then check that latest_valid() points at a checkpoint that loads and
equals what was saved for its step, and that it is no older than the last save the child
reported complete. The kill lands anywhere: inside torch.save, between fsyncs, between the
rename and retention, inside a deletion.

Importing torch takes seconds on a shared 2-core machine, so one helper subprocess imports
it once and forks a fresh saver process per trial; each saver is what we kill.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ckpt_helpers import assert_same

import trainwell
from trainwell.checkpoint import CheckpointConfig, CheckpointStore

CHILD = r'''
import os
import sys
from pathlib import Path

import torch

from trainwell.checkpoint import CheckpointConfig, CheckpointStore


def state_for(step):
    g = torch.Generator().manual_seed(step)
    return {
        "model": {"w": torch.randn(128, 256, generator=g), "b": torch.randn(256, generator=g)},
        "optimizer": {"exp_avg": torch.randn(128, 256, generator=g), "step": step},
        "train": {"step": step, "rng": g.get_state(), "note": "x" * (step % 7)},
    }


def save_forever(root):
    store = CheckpointStore(Path(root), CheckpointConfig(keep_last=2, keep_healthy=1))
    step = 0
    while True:
        step += 1
        store.save(step, state_for(step), {"step": step})
        if step % 3 == 0:
            store.mark_healthy(step, True, {"step": step})
        os.write(1, f"saved {step}\n".encode())  # one write: a kill cannot split the line


if __name__ == "__main__":
    for line in sys.stdin:  # one trial per line: fork a saver, wait until it is killed
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            save_forever(line.strip())
            os._exit(0)
        print(f"child {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"reaped {pid} {status}", flush=True)
'''

_ns: dict = {}
exec(CHILD, _ns)  # the parent rebuilds the expected state with the child's own function
state_for = _ns["state_for"]
TIMEOUT_S = 120.0


class Forker:
    """The helper subprocess and a queue of the lines it (and its savers) print."""

    def __init__(self, tmp: Path) -> None:
        script = tmp / "saver.py"
        script.write_text(CHILD)
        env = dict(os.environ)
        src = str(Path(trainwell.__file__).resolve().parents[1])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line.strip())

    def next_line(self) -> str:
        try:
            return self.lines.get(timeout=TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"the saver went silent (helper rc={self.proc.poll()})") from None

    def trial(self, root: Path, delay_s: float) -> list[int]:
        """Start a saver on ``root``, SIGKILL it ``delay_s`` after its first completed save;
        return the steps it reported complete."""
        self.proc.stdin.write(f"{root}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        head = self.next_line()
        assert head.startswith("child "), head
        pid = int(head.split()[1])
        done: list[int] = []
        while not done:
            line = self.next_line()
            assert line.startswith("saved "), line
            done.append(int(line.split()[1]))
        time.sleep(delay_s)
        os.kill(pid, signal.SIGKILL)
        while not (line := self.next_line()).startswith("reaped "):
            done.append(int(line.split()[1]))
        assert int(line.split()[2]) == signal.SIGKILL, f"the saver did not die by SIGKILL: {line}"
        return done

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_after_kill(root: Path, done: list[int], where: str) -> None:
    store = CheckpointStore(root, CheckpointConfig(keep_last=2, keep_healthy=1))
    info, skipped = store.latest_valid()
    assert info is not None, f"{where}: no valid checkpoint; skipped={skipped}"
    assert info.step >= done[-1], f"{where}: latest valid {info.step} < last completed {done[-1]}"
    assert_same(state_for(info.step), store.load(info), where)
    for other in store.list():  # nothing complete was damaged by the kill
        if other.step <= done[-1]:
            assert other.valid, f"{where}: {other.path}: {other.problems}"
    if done[-1] >= 3:
        healthy = store.latest_healthy()
        assert healthy is not None and healthy.step % 3 == 0, where
        assert_same(state_for(healthy.step), store.load(healthy), where)
    # the restarted run saves again and sweeps what the crash left behind
    store.save(info.step + 1, state_for(info.step + 1))
    assert not [p for p in root.iterdir() if p.name.startswith(".")], where


def run_trials(tmp_path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    forker = Forker(tmp_path)
    try:
        for i in range(n):
            root = tmp_path / f"trial{i}" / "checkpoints"
            delay = rng.uniform(0.0, 0.3)
            done = forker.trial(root, delay)
            where = f"trial {i} (seed {seed}, killed {delay:.3f}s after step 1, last done {done[-1]})"
            check_after_kill(root, done, where)
    finally:
        forker.close()


def test_kill9_during_saves(tmp_path):
    run_trials(tmp_path, n=3, seed=1234)


@pytest.mark.slow
def test_kill9_during_saves_many_times(tmp_path):
    run_trials(tmp_path, n=24, seed=int(time.time()))
