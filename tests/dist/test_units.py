"""dist/ without processes: the batch shards, the config checks, the launcher's command,
the per-rank faults. Fast; the multi-process behaviour is in test_torchrun.py."""

from __future__ import annotations

import pytest
import torch

from trainwell import drills as faults
from trainwell.config import load_config
from trainwell.data.loader import BatchLoader
from trainwell.data.sampler import ResumableSampler
from trainwell.dist import setup
from trainwell.dist.context import _check_config
from trainwell.dist.launch import elastic_resume, torchrun_command
from trainwell.errors import ConfigError


class Rows(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 50

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i)])


def _ids(shard: tuple[int, int], accumulate: int, steps: int = 7) -> list[list[int]]:
    loader = BatchLoader(Rows(), ResumableSampler(50, seed=3), torch.stack, torch.device("cpu"), 12, accumulate, shard)
    return [[int(i) for idx, _ in loader.next() for i in idx] for _ in range(steps)]


@pytest.mark.parametrize("accumulate", [1, 2, 3])
def test_rank_shards_partition_the_global_batch(accumulate: int) -> None:
    whole = _ids((0, 1), accumulate)
    parts = [_ids((r, 3), accumulate) for r in range(3)]
    for step, ids in enumerate(whole):  # crossing an epoch boundary too (7 x 12 > 50)
        assert [i for p in parts for i in p[step]] == ids


def test_micro_batches_split_each_rank_share() -> None:
    loader = BatchLoader(Rows(), ResumableSampler(50, seed=0), torch.stack, torch.device("cpu"), 12, 3, (1, 2))
    micro = loader.next()
    assert [int(idx.numel()) for idx, _ in micro] == [2, 2, 2]
    assert all(torch.equal(b.view(-1), idx.float()) for idx, b in micro)


def _cfg(*overrides: str):  # noqa: ANN202
    return load_config(None, ["task.name=digits", *overrides])


def test_batch_must_split_evenly_over_ranks() -> None:
    with pytest.raises(ConfigError, match=r"train.batch_size \(30\) must be divisible"):
        _check_config(_cfg("train.batch_size=30"), "ddp", 4)
    with pytest.raises(ConfigError, match=r"train.accumulate \(8\) must be <="):
        _check_config(_cfg("train.batch_size=32", "train.accumulate=8"), "ddp", 8)
    _check_config(_cfg("train.batch_size=32", "train.accumulate=4"), "ddp", 8)


def test_fsdp_refuses_what_it_cannot_shard() -> None:
    cfg = _cfg("precision=fp16", "ema.decay=0.9", "train.batch_size=32")
    with pytest.raises(ConfigError) as e:
        _check_config(cfg, "fsdp", 2)
    text = str(e.value)
    assert "precision = 'fp16'" in text and "instruments.preset" in text
    assert "ema.decay" not in text  # the EMA is sharded like the model (train/ema.py)


def test_single_process_has_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    assert setup(_cfg()) is None
    with pytest.raises(ConfigError, match="needs processes started by torchrun"):
        setup(_cfg("dist.parallel=ddp"))


def test_parallel_none_refuses_several_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="dist.parallel = 'none'"):
        setup(_cfg("dist.parallel=none"))


def test_torchrun_command() -> None:
    cmd = torchrun_command(2, 1, ["train", "--set", "task.name=digits"])
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=2" in cmd and "--max-restarts=1" in cmd
    assert cmd[-5:] == ["-m", "trainwell", "train", "--set", "task.name=digits"]
    assert not any(c.startswith("--max-restarts") for c in torchrun_command(2, 0, ["train"]))


def test_elastic_run_needs_a_fixed_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    with pytest.raises(ConfigError, match="--run-dir"):
        elastic_resume(None, False)
    assert elastic_resume("runs/x", False) is False
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert elastic_resume("runs/x", False) is True


def test_batch_faults_hit_only_their_rank() -> None:
    cfg = faults.FaultsConfig(nan_batch_at=[2], nan_loss_at=[2], rank=1)
    x, idx = torch.ones(4, 3), torch.arange(4)
    assert faults.apply_to_batch(cfg, 2, x, idx, rank=0) is x
    assert torch.isnan(faults.apply_to_batch(cfg, 2, x, idx, rank=1)).all()
    assert not faults.nan_loss(cfg, 2, rank=0) and faults.nan_loss(cfg, 2, rank=1)
    everyone = faults.FaultsConfig(nan_batch_at=[2])
    assert torch.isnan(faults.apply_to_batch(everyone, 2, x, idx, rank=3)).all()


def test_tensor_parallel_reports_every_problem_at_once() -> None:
    cfg = _cfg("dist.tensor_parallel=3", "model.kind=mlp", "train.batch_size=32", "ema.decay=0.9")
    with pytest.raises(ConfigError) as e:
        _check_config(cfg, "ddp", 4)
    text = str(e.value)
    for needle in ("dist.tensor_parallel (3) must divide the number of processes (4)",
                   "dist.parallel = 'ddp' cannot be combined", "plan for the gpt only"):
        assert needle in text


def test_tensor_parallel_splits_whole_heads_and_the_batch_over_data_parallel_ranks() -> None:
    gpt = ("task.name=bytes-lm", "task.seq_len=16", "instruments.preset=off")
    with pytest.raises(ConfigError) as e:
        _check_config(load_config(None, [*gpt, "model.heads=3", "model.width=24", "dist.tensor_parallel=2",
                                         "train.batch_size=3"]), "fsdp", 4)
    text = str(e.value)
    assert "model.heads (3) must be divisible by dist.tensor_parallel (2)" in text
    assert "train.batch_size (3) must be divisible by the number of data-parallel ranks" in text and "(2)" in text
    # 4 processes in tensor-parallel pairs: the global batch splits in 2, not 4
    _check_config(load_config(None, [*gpt, "model.heads=2", "dist.tensor_parallel=2", "train.batch_size=2"]),
                  "fsdp", 4)


def test_the_launcher_refuses_a_bad_tensor_parallel_config_before_starting(tmp_path) -> None:  # noqa: ANN001
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "trainwell", "train", "--set", "task.name=digits", "--set",
                          "dist.tensor_parallel=2", "--set", "train.batch_size=30", "--nproc", "3",
                          "--run-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, out.stderr
    assert "dist.tensor_parallel (2) must divide" in out.stderr and "plan for the gpt only" in out.stderr
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_a_model_without_a_plan_is_refused() -> None:
    from torch import nn

    from trainwell.dist.tensor import plan_problems
    from trainwell.models.gpt import GPT

    assert "plan for trainwell's GPT" in plan_problems(nn.Linear(2, 2), 2)[0]
    assert any("vocabulary (255 tokens)" in p for p in plan_problems(GPT(255, 8, width=16, heads=2), 2))
    assert plan_problems(GPT(256, 8, width=16, heads=2), 2) == []
