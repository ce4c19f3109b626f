"""The EMA of the weights under FSDP2 and tensor parallelism (train/ema.py's ShardedEMA):
the same arithmetic as torch's AveragedModel in one process (bit for bit), and, through the
real CLI and torchrun on CPU with gloo, the same EMA evaluations as one process under FSDP2,
tensor parallel and FSDP2 x TP; a killed group resumes to the same EMA evaluations; the EMA
weights of a sharded run export to the one-process run's.

The multi-process runs start 2 or 4 Python processes on a 2-core machine: marked slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dist_helpers import ENV, events, rows, trainwell_train
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from trainwell.train.ema import ShardedEMA

BASE = [
    "task.name=bytes-lm", "task.seq_len=16", "model.width=16", "model.depth=2", "model.heads=2",
    "train.steps=20", "train.batch_size=4", "optim.lr=1e-3", "train.threads=1", "train.eval_every=5",
    "train.eval_batches=1", "log.progress=off", "log.every=5", "log.tensorboard=false", "log.sample_chars=0",
    "checkpoint.every_steps=10", "instruments.preset=off", "ema.decay=0.9",
]
"""20 steps of a 2-block GPT (width 16, 2 heads), global batch 4 x 16 tokens, an evaluation
(raw and EMA weights) every 5 steps, a checkpoint every 10, EMA decay 0.9 (short enough a
memory that the average moves visibly within 20 steps)."""
TP2 = ("dist.tensor_parallel=2",)
FSDP = ("dist.parallel=fsdp", "dist.fsdp_reshard_after_forward=false")
"""FSDP2 across 2 processes, keeping each unit's weights gathered after its forward: the
harder case for the swap, whose evaluation must not compute with weights gathered before."""


def train(run_dir: Path, *overrides: str, **kw: object) -> Path:
    trainwell_train(run_dir, *BASE, *overrides, timeout=300, **kw)  # type: ignore[arg-type]
    return run_dir


def evaluations(run_dir: Path) -> dict[tuple[int, str], float]:
    """Every eval/* and eval_ema/* value a run logged, by (step, name)."""
    return {(r["step"], k): v for r in rows(run_dir) for k, v in r.items() if k.startswith("eval")}


def assert_same_evaluations(a: Path, b: Path, tol: float) -> None:
    """Both runs logged the same evaluations, EMA ones at every evaluation step, within ``tol``."""
    ea, eb = evaluations(a), evaluations(b)
    assert ea.keys() == eb.keys()
    assert {s for s, k in ea if k == "eval_ema/loss"} == {5, 10, 15, 20}
    worst = max(abs(ea[k] - eb[k]) for k in ea)
    assert worst <= tol, f"largest evaluation difference {worst:.3g} > {tol}"


def export(run_dir: Path, to: Path) -> dict[str, torch.Tensor]:
    """`trainwell export RUN --ema`'s tensors."""
    from trainwell.checkpoint import load_weights

    out = subprocess.run([sys.executable, "-m", "trainwell", "export", str(run_dir), "--ema", "--to", str(to)],
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    return load_weights(to)


# ------------------------------------------------------------ one process: the arithmetic


def test_sharded_ema_is_averaged_model_bit_for_bit() -> None:
    """On plain tensors ShardedEMA computes what AveragedModel(use_buffers=True) does (the
    first update a copy, then lerp by 1 - decay; BatchNorm statistics and their integer
    counter averaged alike), and a swap in and out leaves both sets of weights unchanged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema = ShardedEMA(model, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        model(torch.randn(16, 4)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        reference.update_parameters(model)
        ema.update_parameters(model)
    expected = reference.module.state_dict()
    assert ema.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in ema.state_dict().items())
    assert int(ema.n_averaged) == int(reference.n_averaged) == 5
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swapped_into(model):
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, raw[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, expected[k]) for k, v in ema.state_dict().items())


# ------------------------------------------------------------ several processes


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("single") / "run")


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("fsdp") / "run", *FSDP, nproc=2)


@pytest.fixture(scope="module")
def tp2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("tp2") / "run", *TP2, nproc=2)


@pytest.mark.slow
def test_fsdp2_ema_evaluations_match_one_process(single: Path, fsdp: Path) -> None:
    assert_same_evaluations(single, fsdp, 1e-5)
    assert not (fsdp / "ranks").exists()


@pytest.mark.slow
def test_tensor_parallel_ema_evaluations_match_one_process(single: Path, tp2: Path) -> None:
    assert_same_evaluations(single, tp2, 1e-5)


@pytest.mark.slow
def test_fsdp_by_tensor_parallel_ema_matches_one_process(single: Path, tmp_path: Path) -> None:
    """2 x 2 on 4 processes: each shadow is sharded over both dimensions of the grid."""
    run = train(tmp_path / "run", *TP2, "dist.parallel=fsdp", nproc=4)
    assert_same_evaluations(single, run, 1e-5)


@pytest.mark.slow
def test_a_killed_group_resumes_to_the_same_ema_evaluations(tp2: Path, tmp_path: Path) -> None:
    """Both processes SIGKILL themselves at iteration 15; torchrun restarts the group, which
    resumes from the checkpoint of step 10: shadows from the shards, the update count from
    the store (a lost count would restart the average with a copy of the weights)."""
    run = train(tmp_path / "run", *TP2, "faults.kill_at=15", nproc=2, extra=("--max-restarts", "1"))
    resumes = [e for e in events(run) if e["kind"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == 10
    assert evaluations(run) == evaluations(tp2)  # bit for bit
    assert (run / "checkpoints" / "sharded" / "step-00000020").is_dir()


GUARDED = ("train.steps=30", "checkpoint.every_steps=5", "faults.nan_loss_at=[8,15,16]", "guards.max_skips=2",
           "guards.skip_window=3")
"""A NaN loss at iterations 8 and 15 (skips) and 16: the autopilot rolls back to step 5."""


@pytest.mark.slow
def test_a_rollback_restores_the_sharded_ema(tmp_path: Path) -> None:
    """The rollback loads the shadows from the shards of step 5 and the update count from the
    store: the EMA evaluations after it are one process's."""
    one = train(tmp_path / "one", *GUARDED)
    tp = train(tmp_path / "tp", *GUARDED, *TP2, nproc=2)
    kinds = [(e["kind"], e.get("iteration")) for e in events(tp)]
    assert ("rollback", 16) in kinds and kinds == [(e["kind"], e.get("iteration")) for e in events(one)]
    a, b = evaluations(one), evaluations(tp)
    assert a.keys() == b.keys() and {s for s, k in a if k == "eval_ema/loss"} == {5, 10, 15, 20, 25, 30}
    assert max(abs(a[k] - b[k]) for k in a) <= 1e-5


@pytest.mark.slow
def test_ema_export_of_sharded_runs_is_the_one_process_ema(single: Path, fsdp: Path, tp2: Path,
                                                           tmp_path: Path) -> None:
    """`trainwell export --ema` reads the shards' EMA part; consolidated, it loads into the
    plain GPT as the model part does."""
    from trainwell.config import load_config
    from trainwell.dist.sharded import consolidate
    from trainwell.tasks import build_task

    reference = export(single, tmp_path / "one.safetensors")
    for run in (fsdp, tp2):
        exported = export(run, tmp_path / f"{run.parent.name}.safetensors")
        assert exported.keys() == reference.keys()
        worst = max((exported[k] - v).abs().max().item() for k, v in reference.items())
        assert worst <= 1e-5, f"{run.parent.name}: largest EMA weight difference {worst:.3g}"
        assert any(not torch.equal(exported[k], v) for k, v in export_raw(run, tmp_path).items())
    consolidate(tp2 / "checkpoints" / "sharded" / "step-00000020", tmp_path / "full.pt")
    state = torch.load(tmp_path / "full.pt", weights_only=False)
    build_task(load_config(None, BASE)).build_model().load_state_dict(state["ema"])  # strict


def export_raw(run_dir: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The raw weights of a run, as `trainwell export` writes them (the EMA must differ)."""
    from trainwell.checkpoint import export_run, load_weights

    return load_weights(export_run(run_dir, tmp_path / f"raw-{run_dir.parent.name}.safetensors"))
