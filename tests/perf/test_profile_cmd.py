"""``trainwell profile``: a few steps under torch.profiler, a Chrome trace, the top operators."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from trainwell.cli import profile_cmd
from trainwell.errors import ConfigError

TINY_DIGITS = ["task.name=digits", "model.width=16", "train.batch_size=16", "train.threads=1",
               "schedule.warmup_steps=2"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trainwell")
    profile_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["profile", *argv])


def test_profile_two_steps_on_digits_writes_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets = [a for s in TINY_DIGITS for a in ("--set", s)]
    args = parse([*sets, "--steps", "2", "--warmup", "1", "--run-dir", str(tmp_path / "run")])
    assert args.handler(args) == 0

    trace = tmp_path / "run" / "profile" / "trace.json"
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    assert {"train_step_0", "train_step_1"} <= names  # both profiled steps are in the trace
    assert any(str(n).startswith("aten::") for n in names)

    out = capsys.readouterr().out
    assert "top operators by self CPU time" in out
    assert "aten::addmm" in out or "aten::mm" in out  # an MLP's time is in its matmuls
    assert str(trace) in out
    table = (tmp_path / "run" / "profile" / "top_ops.txt").read_text()
    assert "self CPU ms" in table
    assert (tmp_path / "run" / "profile" / "config.toml").exists()


def test_profile_result_fields(tmp_path: Path) -> None:
    from trainwell.config import load_config

    cfg = load_config(None, TINY_DIGITS)
    result = profile_cmd.profile_steps(cfg, steps=2, warmup=0, run_dir=tmp_path, top=5)
    assert len(result.step_ms) == 2 and len(result.profiled_step_ms) == 2
    assert all(t > 0 for t in result.step_ms)
    assert 0 < len(result.ops) <= 5
    assert result.ops == sorted(result.ops, key=lambda o: o.self_cpu_ms, reverse=True)
    assert result.ops_device == []  # CPU run: no device table


@pytest.mark.parametrize("flag", ["--steps", "--top"])
def test_bad_counts_are_config_errors(flag: str) -> None:
    args = parse([flag, "0"])
    with pytest.raises(ConfigError, match=f"{flag} must be >= 1, got 0"):
        args.handler(args)


def test_format_table_shares_are_of_all_operators() -> None:
    ops = [profile_cmd.OpTime("aten::mm", 4, 6.0, 6.0, 0.0), profile_cmd.OpTime("aten::add", 2, 2.0, 2.0, 0.0)]
    table = profile_cmd.format_table(ops, "self CPU", steps=2, total_ms=10.0)
    lines = table.splitlines()
    assert lines[2].split()[-1] == "60.0%" and lines[2].split()[1] == "2.0"  # 4 calls over 2 steps
    assert lines[3].split()[-1] == "20.0%"
