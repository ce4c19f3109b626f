"""Exact resume: a run killed (SIGTERM, SIGINT or kill -9, even mid-checkpoint) and resumed
logs the same numbers at every step and ends with bit-identical parameters."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainwell.checkpoint import CheckpointStore
from trainwell.cli.main import main
from trainwell.config import load_config
from trainwell.train.loop import run

SRC = str(Path(__file__).resolve().parents[2] / "src")
STEPS = 40
OVERRIDES = [
    "task.name=digits", f"train.steps={STEPS}", "train.batch_size=16", "train.eval_every=10",
    "schedule.warmup_steps=5", "model.width=32", "ema.decay=0.9", "log.every=1",
    "log.tensorboard=false", "checkpoint.every_steps=3", "checkpoint.keep_last=2",
    "train.threads=1",  # the same thread count in every process: float sums depend on it
]


def numbers(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("sys/")} for r in rows]


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    info, _ = CheckpointStore(run_dir / "checkpoints").latest_valid()
    assert info is not None and info.step == STEPS
    return CheckpointStore(run_dir / "checkpoints").load(info, parts=["model"])["model"]


def assert_same_run(a: Path, b: Path) -> None:
    assert numbers(a) == numbers(b)
    pa, pb = final_params(a), final_params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    run(load_config(overrides=OVERRIDES), run_dir=out, progress=False)
    return out


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1"}


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "trainwell", "train", "--run-dir", str(run_dir), "--progress", "off"]
    for o in OVERRIDES:
        argv += ["--set", o]
    return subprocess.Popen([*argv, *extra], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((run_dir / "checkpoints").glob("step-*")) or proc.poll() is not None:
            return
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def test_in_process_resume_after_sigterm_is_exact(reference, tmp_path):
    """SIGTERM mid-run: checkpoint, exit code 143, then `trainwell resume` finishes identically."""
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 143, err
    assert "trainwell resume" in err
    assert main(["resume", str(run_dir), "--progress", "off"]) == 0
    assert_same_run(reference, run_dir)


def test_sigint_saves_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    info, _ = CheckpointStore(run_dir / "checkpoints").latest_valid()
    assert info is not None and info.step == summary["steps"]


def kill_and_resume_trial(reference: Path, run_dir: Path, rng: random.Random) -> None:
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc)
    time.sleep(rng.uniform(0.0, 1.5))  # somewhere in the run, often mid-save (every 3 steps)
    proc.kill()
    proc.communicate(timeout=60)
    info, _ = CheckpointStore(run_dir / "checkpoints").latest_valid()
    assert info is not None  # a valid checkpoint survives any kill
    assert main(["resume", str(run_dir), "--progress", "off"]) == 0
    assert_same_run(reference, run_dir)


def test_kill9_at_random_moments_resumes_exactly(reference, tmp_path):
    rng = random.Random(0)
    for trial in range(2):
        kill_and_resume_trial(reference, tmp_path / f"t{trial}", rng)


@pytest.mark.slow
def test_kill9_twenty_trials(reference, tmp_path):
    rng = random.Random(1)
    for trial in range(20):
        kill_and_resume_trial(reference, tmp_path / f"t{trial}", rng)


def test_supervisor_restarts_after_kill9(reference, tmp_path):
    """--max-restarts: the child is killed; the supervisor restarts it from the newest valid
    checkpoint, records the restart in the logbook, and the run finishes exactly."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, "--max-restarts", "2")
    deadline = time.time() + 120
    child_pid = None
    while time.time() < deadline and child_pid is None:
        if list((run_dir / "checkpoints").glob("step-*")):
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            child_pid = int(out[0]) if out else None
        time.sleep(0.05)
    assert child_pid is not None, "no supervised child found"
    os.kill(child_pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    events = [json.loads(x) for x in (run_dir / "logbook.jsonl").read_text().splitlines()]
    restarts = [e for e in events if e["kind"] == "restart" and "cause" in e]
    assert len(restarts) == 1 and "SIGKILL" in restarts[0]["cause"]
    assert "steps_lost" in restarts[0]
    assert_same_run(reference, run_dir)


def test_resume_refuses_a_changed_config(tmp_path):
    run_dir = tmp_path / "run"
    run(load_config(overrides=[*OVERRIDES, "train.steps=10"]), run_dir=run_dir, progress=False)
    with pytest.raises(Exception) as e:
        run(load_config(overrides=[*OVERRIDES, "train.steps=10", "optim.lr=0.5"]), run_dir=run_dir, resume=True, progress=False)
    assert "optim.lr" in str(e.value)


def test_resume_skips_a_corrupted_latest_checkpoint(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc)
    time.sleep(0.8)
    proc.kill()
    proc.communicate(timeout=60)
    store = CheckpointStore(run_dir / "checkpoints")
    valid = [i for i in store.list() if i.valid]
    if len(valid) < 2:
        pytest.skip("killed before two checkpoints existed")
    newest = valid[-1].path / "model.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    info, skipped = store.latest_valid()
    assert info.step == valid[-2].step and any("model.pt" in s for s in skipped)
    assert main(["resume", str(run_dir), "--progress", "off"]) == 0
    assert_same_run(reference, run_dir)


def test_resuming_a_finished_run_changes_nothing(reference, tmp_path):
    """A run killed after its final checkpoint (while closing) resumes as complete: the final
    evaluation is not logged twice (a regression the kill -9 trials found)."""
    import shutil

    run_dir = tmp_path / "done"
    shutil.copytree(reference, run_dir)
    before = (run_dir / "metrics.jsonl").read_text()
    assert main(["resume", str(run_dir), "--progress", "off"]) == 0
    assert (run_dir / "metrics.jsonl").read_text() == before
    assert json.loads((run_dir / "summary.json").read_text())["final"]["eval/accuracy"] > 0


def test_resume_reads_the_process_count_from_env_json(tmp_path):
    from trainwell.cli.resume_cmd import world_size

    assert world_size(tmp_path) == 1  # no env.json
    (tmp_path / "env.json").write_text('{"torch": "2.13.0"}')
    assert world_size(tmp_path) == 1  # a one-process run
    (tmp_path / "env.json").write_text('{"dist": {"parallel": "ddp", "world_size": 4, "backend": "gloo"}}')
    assert world_size(tmp_path) == 4
    (tmp_path / "env.json").write_text('{"dist": ')
    assert world_size(tmp_path) == 1  # unreadable: one process, as before


def test_resume_refuses_a_bad_process_count(tmp_path, capsys):
    (tmp_path / "config.toml").write_text("")
    assert main(["resume", str(tmp_path), "--nproc", "0"]) != 0
    assert "--nproc must be >= 1, got 0" in capsys.readouterr().err
