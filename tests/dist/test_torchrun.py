"""Two CPU processes (gloo) through the real CLI and torchrun: DDP equals one process with
the same global batch, resume and elastic restarts are exact, the guards act in unison,
FSDP2 trains and restarts from its sharded (DCP) checkpoints.

Each run starts two Python processes (about 5-10 s on 2 cores): marked slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dist_helpers import ENV, assert_close, losses, rows, trainwell_train

pytestmark = pytest.mark.slow

BASE = [
    "task.name=digits", "train.steps=30", "schedule.warmup_steps=5", "train.batch_size=32",
    "train.threads=1", "train.eval_every=0", "log.progress=off", "log.every=1", "checkpoint.every_steps=10",
]
"""30 steps of the digits MLP (76k parameters), every step logged, a checkpoint every 10."""


def train(run_dir: Path, *overrides: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return trainwell_train(run_dir, *BASE, *overrides, timeout=120, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("single") / "run"
    train(run, "train.accumulate=2")
    return run


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ddp") / "run"
    train(run, "train.accumulate=2", nproc=2)
    return run


def test_ddp_matches_one_process_with_the_same_global_batch(single: Path, ddp: Path) -> None:
    assert_close(losses(single), losses(ddp), 1e-5, n=30)
    final_single, final_ddp = rows(single)[-1], rows(ddp)[-1]
    assert abs(final_single["eval/loss"] - final_ddp["eval/loss"]) < 1e-5
    env = json.loads((ddp / "env.json").read_text())
    assert env["dist"] == {"parallel": "ddp", "world_size": 2, "backend": "gloo", "restart": 0}
    assert not (ddp / "ranks").exists()  # no failures: the other rank wrote nothing
    assert json.loads((ddp / "summary.json").read_text())["status"] == "completed"


def test_resume_under_ddp_is_exact(ddp: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run, "train.accumulate=2", "faults.kill_at=25", nproc=2, expect=1)  # rank 0 dies at iteration 25
    assert len(losses(run)) < 30
    train(run, "train.accumulate=2", nproc=2, extra=("--resume",))
    assert losses(run) == losses(ddp)  # bit for bit: the same ranks, the same order of sums


def test_trainwell_resume_uses_the_runs_own_process_count(ddp: Path, tmp_path: Path) -> None:
    """`trainwell resume RUN` on a two-process run continues with two processes (env.json),
    as exactly as `train --resume --nproc 2`."""
    run = tmp_path / "run"
    train(run, "train.accumulate=2", "faults.kill_at=25", nproc=2, expect=1)
    out = subprocess.run([sys.executable, "-m", "trainwell", "resume", str(run)], capture_output=True,
                         text=True, timeout=120, env=ENV)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming with 2 through torchrun" in out.stdout
    assert losses(run) == losses(ddp)
    assert json.loads((run / "env.json").read_text())["dist"]["world_size"] == 2


def test_a_killed_rank_brings_the_group_back(ddp: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run, "train.accumulate=2", "faults.kill_at=25", "faults.rank=1", nproc=2, extra=("--max-restarts", "1"))
    assert losses(run) == losses(ddp)
    events = [json.loads(line) for line in (run / "logbook.jsonl").read_text().splitlines()]
    resumes = [e for e in events if e["kind"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == 20 and "elastic restart 1" in resumes[0]["message"]
    assert json.loads((run / "env.json").read_text())["dist"]["restart"] == 1
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_guards_act_in_unison(tmp_path: Path) -> None:
    """NaN in one sample of rank 1's data at iteration 5: both ranks must skip that update
    and quarantine the same sample, exactly as one process with the same global batch does
    (rank 1 holds rows 16..31 of each global batch of 32)."""
    one, two = tmp_path / "one", tmp_path / "two"
    train(one, "faults.nan_batch_at=[5]", "faults.poison_rows=[19]")
    train(two, "faults.nan_batch_at=[5]", "faults.poison_rows=[3]", "faults.rank=1", nproc=2)
    assert_close(losses(one), losses(two), 1e-5, n=30)
    for run in (one, two):
        assert rows(run)[-1 if "guard/skips" in rows(run)[-1] else -2]["guard/skips"] == 1
    quarantined = [
        [e["sample_ids"] for e in map(json.loads, (run / "logbook.jsonl").read_text().splitlines())
         if e["kind"] == "quarantine"]
        for run in (one, two)
    ]
    assert quarantined[0] == quarantined[1] and len(quarantined[0][0]) == 1


def test_fsdp2_trains_and_restarts_from_sharded_checkpoints(single: Path, tmp_path: Path) -> None:
    """FSDP2 (fully_shard) runs on CPU with gloo in this torch; the DCP checkpoints bring a
    killed group back exactly."""
    run = tmp_path / "run"
    fsdp = ("train.accumulate=2", "dist.parallel=fsdp", "instruments.preset=off")
    train(run, *fsdp, "faults.kill_at=15", "faults.rank=1", nproc=2, extra=("--max-restarts", "1"))
    assert_close(losses(single), losses(run), 1e-5, n=30)
    sharded = sorted(p.name for p in (run / "checkpoints" / "sharded").iterdir())
    assert sharded == ["step-00000010", "step-00000020", "step-00000030"]
    assert (run / "checkpoints" / "sharded" / "step-00000030" / ".metadata").is_file()

    # consolidated into one file, the shards load into the plain model
    import torch

    from trainwell.config import load_config
    from trainwell.dist.sharded import consolidate
    from trainwell.tasks import build_task

    consolidate(run / "checkpoints" / "sharded" / "step-00000030", tmp_path / "full.pt")
    state = torch.load(tmp_path / "full.pt", weights_only=False)
    model = build_task(load_config(None, ["task.name=digits"])).build_model()
    model.load_state_dict(state["model"])  # strict: every key, every shape


def test_timed_checkpoints_are_taken_by_every_rank_at_the_same_step(tmp_path: Path) -> None:
    """checkpoint.every_minutes under FSDP2 (every rank writes its shards: ranks that disagreed
    on a save would wait for each other for ever): rank 0's clock decides, its answer
    travelling with a step's gather; the run completes with several timed checkpoints."""
    run = tmp_path / "run"
    train(run, "dist.parallel=fsdp", "instruments.preset=off", "checkpoint.every_steps=0",
          "checkpoint.every_minutes=0.0003", "checkpoint.keep_last=30", nproc=2)
    saved = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("step-*"))
    assert len(saved) >= 3 and saved[-1] == 30, saved
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
