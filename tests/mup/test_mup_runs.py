"""muP in real runs through the CLI: a run of a user model (not a built-in) killed with
SIGKILL resumes bit for bit; the built-in MLP in muP trains under DDP with 2 processes as one
process does; the readout survives torch.compile without a graph break.

Each takes a minute or more on 2 busy cores (subprocesses, torch.compile): marked slow, like tests/dist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
BASE = ["train.steps=30", "schedule.warmup_steps=5", "train.batch_size=32", "train.threads=1",
        "train.eval_every=0", "log.progress=off", "log.every=1", "checkpoint.every_steps=10",
        "model.parametrization=mup", "model.mup_base_width=16", "model.width=64", "optim.lr=0.01"]


def train(run_dir: Path, *overrides: str, nproc: int = 0, resume: bool = False,
          expect: int = 0) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "trainwell", "train", "--run-dir", str(run_dir)]
    for item in (*BASE, *overrides):
        cmd += ["--set", item]
    if nproc:
        cmd += ["--nproc", str(nproc)]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == expect, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.mark.slow
def test_a_user_model_in_mup_resumes_exactly_after_kill9(tmp_path: Path) -> None:
    user = "task.name=mup_user_task:make_task"
    ref = tmp_path / "ref"
    train(ref, user)
    run = tmp_path / "run"
    train(run, user, "faults.kill_at=25", expect=-9)  # SIGKILL at iteration 25: no chance to clean up
    assert len(losses(run)) < 30
    train(run, user, resume=True)
    assert losses(run) == losses(ref) and len(losses(ref)) == 30
    saved = sorted((run / "checkpoints").glob("step-*/optimizer.pt"))
    assert saved, "no optimizer state was checkpointed"
    groups = torch.load(saved[-1], weights_only=True)["param_groups"]
    # the roles and their lr travel in the optimizer's groups, not on the tensors
    assert {g["mup_role"] for g in groups} == {"input", "hidden", "output", "fixed"}
    hidden = next(g for g in groups if g["mup_role"] == "hidden")
    assert hidden["initial_lr"] == pytest.approx(0.01 / 4)  # width 64 / base 16


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_mup_trains_under_ddp_and_fsdp2_as_one_process(tmp_path: Path, parallel: str) -> None:
    """The roles and per-role learning rates live in the optimizer's groups, not on the tensors:
    FSDP2, which replaces the parameters with shards, keeps them."""
    digits = ("task.name=digits", "train.accumulate=2", "instruments.preset=off")  # FSDP2: no instruments
    one, two = tmp_path / "one", tmp_path / "two"
    train(one, *digits)
    train(two, *digits, f"dist.parallel={parallel}", nproc=2)
    a, b = losses(one), losses(two)
    assert a.keys() == b.keys() and len(a) == 30
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5


@pytest.mark.slow
def test_the_readout_compiles_without_a_graph_break() -> None:
    from trainwell.models import ModelSpec, build_model
    from trainwell.models.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(kind="gpt", depth=1, width=32, heads=2, parametrization="mup", mup_base_width=8)
    model = build_model(cfg, ModelSpec(vocab_size=64, seq_len=8))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randint(0, 64, (2, 8))
    assert torch.allclose(compiled(x), model(x), atol=1e-6)
    compiled(x).sum().backward()
    assert model.wte.weight.grad is not None
