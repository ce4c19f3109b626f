"""Studies end to end on the digits task (tiny trials): trials are real runs, infeasible is a
result, workers never draw a point twice, a study continues, a killed study resumes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainwell.errors import ConfigError
from trainwell.tune.config import load_study
from trainwell.tune.run import _run_all
from trainwell.tune.study import load_handle, open_study, read_view

ROOT = Path(__file__).resolve().parents[2]


def study(steps: int = 40, trials: int = 4, space: dict | None = None, **tune) -> dict:
    return {
        "task": {"name": "digits"},
        "train": {"steps": steps, "eval_every": max(1, steps // 4)},
        "schedule": {"warmup_steps": 0},
        "log": {"tensorboard": False},
        "tune": {"name": "t", "trials": trials, **tune,
                 "space": space or {"optim.lr": {"log": [1e-4, 3e-2]}, "optim.weight_decay": {"log": [1e-3, 1.0]}}},
    }


def run_study(d: dict, path: Path, workers: int = 1):
    h = open_study(load_study(d), path, None)
    _run_all(h, workers, io.StringIO())
    return h, read_view(h)


def test_trials_are_run_directories_and_a_diverging_trial_is_infeasible_with_its_reason(tmp_path):
    d = study(steps=60, space={"optim.lr": {"choice": [0.003, 30.0]}}, sampler="grid", trials=None)
    d["optim"] = {"name": "sgd", "momentum": 0.0}
    h, view = run_study(d, tmp_path / "s")
    by_lr = {t.params["optim.lr"]: t for t in view.trials}
    assert set(by_lr) == {0.003, 30.0}
    good, bad = by_lr[0.003], by_lr[30.0]
    assert good.state == "complete" and 0.0 < good.value <= 1.0 and good.best_step is not None
    assert bad.state == "infeasible" and bad.value is None
    assert "rollback" in bad.reason or "divergence" in bad.reason or "non-finite" in bad.reason, bad.reason
    assert bad.interventions_total >= 1
    for t in view.trials:  # each trial is a run directory `trainwell report` can read
        run = Path(t.run_dir)
        assert run.parent == (tmp_path / "s" / "trials").resolve()
        for name in ("config.toml", "metrics.jsonl", "summary.json"):
            assert (run / name).is_file(), name
    assert "lr = 30.0" in (Path(bad.run_dir) / "config.toml").read_text()


def test_two_workers_draw_the_same_points_as_one_and_never_one_twice(tmp_path):
    _, one = run_study(study(steps=20, trials=6), tmp_path / "one", workers=1)
    _, two = run_study(study(steps=20, trials=6), tmp_path / "two", workers=2)
    assert [t.number for t in two.trials] == list(range(6))
    assert all(t.state == "complete" for t in two.trials)
    points_one = {t.number: t.params for t in one.trials}
    points_two = {t.number: t.params for t in two.trials}
    assert points_one == points_two
    assert len({json.dumps(p, sort_keys=True) for p in points_two.values()}) == 6
    # the worker processes wrote their trials' output to their own logs
    assert len(list((tmp_path / "two" / "workers").glob("worker-*.log"))) == 2


def test_running_again_with_more_trials_continues_the_study(tmp_path):
    h, first = run_study(study(trials=3), tmp_path / "s")
    d = study(trials=5)
    h2, second = run_study(d, tmp_path / "s")
    assert [t.number for t in second.trials] == [0, 1, 2, 3, 4]
    for a, b in zip(first.trials, second.trials[:3], strict=True):
        assert (a.params, a.value, a.duration_s) == (b.params, b.value, b.duration_s)  # not run again


def test_a_study_directory_refuses_another_config(tmp_path):
    run_study(study(trials=2), tmp_path / "s")
    other = study(trials=2)
    other["train"]["steps"] = 50
    with pytest.raises(ConfigError, match="another config.*train.steps: 40 there, 50 now"):
        open_study(load_study(other), tmp_path / "s", None)


def test_seed_reruns_of_the_best_trials(tmp_path):
    from trainwell.tune.study import enqueue_reruns

    h, _ = run_study(study(trials=3), tmp_path / "s")
    assert enqueue_reruns(h, 2, 2) == 4
    assert enqueue_reruns(h, 2, 2) == 0  # already there
    _run_all(h, 1, io.StringIO())
    view = read_view(h)
    reruns = view.reruns
    assert len(reruns) == 4 and len(view.search) == 3
    best_two = {t.number for t in view.ranked()[:2]}
    assert {t.rerun_of for t in reruns} == best_two
    for t in reruns:
        original = next(s for s in view.search if s.number == t.rerun_of)
        assert t.params == original.params and t.seed != original.seed and t.state == "complete"
    assert len({t.number for t in view.trials}) == 7


def test_median_pruning_stops_hopeless_trials(tmp_path):
    space = {"optim.lr": {"log": [1e-6, 1e-2]}}
    _, view = run_study(study(steps=80, trials=8, space=space, pruner="median", sampler="random"), tmp_path / "s")
    pruned = [t for t in view.trials if t.state == "pruned"]
    assert pruned, [(t.params, t.value) for t in view.trials]
    assert all(t.reason.startswith("pruned at step") for t in pruned)
    assert len(view.trials) == 8


def test_tpe_chooses_its_own_points(tmp_path):
    _, view = run_study(study(steps=20, trials=4, sampler="tpe"), tmp_path / "s")
    assert [t.state for t in view.trials] == ["complete"] * 4
    assert len({t.params["optim.lr"] for t in view.trials}) == 4


def _tune_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainwell", "tune", *args]


@pytest.mark.slow
def test_kill_9_at_any_moment_then_run_again_ends_with_exactly_the_trials(tmp_path):
    """The study is killed while both workers are inside a trial that has saved a checkpoint;
    the second run resumes those two from their checkpoints and ends with 6 results."""
    path = tmp_path / "study.toml"
    d = study(steps=900, trials=6)
    d["checkpoint"] = {"every_steps": 100}
    import tomli_w

    path.write_text(tomli_w.dumps(d))
    sd = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(_tune_cli(str(path), "--study-dir", str(sd), "--workers", "2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        mid = [p for p in (sd / "trials").glob("*") if list(p.glob("checkpoints/step-*"))
               and not (p / "summary.json").exists()]
        if len(mid) >= 1:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("no trial reached a checkpoint in time")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    # what the kill interrupted (a trial seen mid-run may have finished just before it)
    interrupted = {p.name for p in (sd / "trials").glob("*")
                   if list(p.glob("checkpoints/step-*")) and not (p / "summary.json").exists()}
    assert interrupted
    out = subprocess.run(_tune_cli(str(path), "--study-dir", str(sd), "--workers", "2"), env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "interrupted trial(s) will resume" in out.stdout
    view = read_view(load_handle(sd))
    assert [t.number for t in view.trials] == list(range(6))
    assert all(t.state == "complete" for t in view.trials), [(t.state, t.reason) for t in view.trials]
    logs = "".join(p.read_text() for p in (sd / "workers").glob("*.log"))
    for name in interrupted:  # resumed from its own checkpoint, not started again
        assert any(line.startswith("resumed from step") and f"/{name}/checkpoints/" in line
                   for line in logs.splitlines()), name
    trial_dirs = sorted(p.name for p in (sd / "trials").iterdir())
    assert trial_dirs == [f"{i:04d}" for i in range(6)]  # nothing duplicated


def test_the_cli_reports_every_problem_of_a_study_file_with_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[task]\nname = "digits"\n[tune]\nsampler = "annealing"\n[tune.space]\n'
                    '"optim.lrr" = { log = [1e-4, 1e-1] }\n"optim.momentum" = { uniform = [0.5, 1.5] }\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(_tune_cli(str(path)), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    for needle in ("tune.sampler", "optim.lrr", "optim.momentum"):
        assert needle in out.stderr, out.stderr
    out = subprocess.run(_tune_cli("show", str(tmp_path / "nowhere")), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "not a study directory" in out.stderr


def test_the_python_api_and_the_show_and_report_commands(tmp_path, capsys):
    import trainwell
    from trainwell.cli.main import main

    res = trainwell.tune(study(steps=30, trials=3), study_dir=tmp_path / "s", out=io.StringIO())
    assert [t.number for t in res.trials] == [0, 1, 2] and res.best is not None
    assert res.best.value == max(t.value for t in res.trials)
    assert main(["tune", "show", str(tmp_path / "s"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) >= {"trials", "best", "warnings"}
    first = shown["trials"][0]
    assert set(first) >= {"number", "state", "params", "value", "run_dir", "interventions", "reason"}
    assert {t["state"] for t in shown["trials"]} == {"complete"}
    assert shown["best"]["number"] == res.best.number
    assert set(first["params"]) == {"optim.lr", "optim.weight_decay"}
    assert main(["tune", "report", str(tmp_path / "s")]) == 0
    page = (tmp_path / "s" / "study.html").read_text()
    assert "<svg" in page and "optim.weight_decay" in page and "http://" not in page.replace("http://www.w3.org", "")
    assert main(["tune", "show", str(tmp_path / "s")]) == 0
    assert "optim.lr" in capsys.readouterr().out


def test_an_evaluation_written_as_nan_makes_the_objective_non_finite(tmp_path):
    """The metrics file writes non-finite values as strings; the objective must read them as
    the floats they are, or a run that blew up would be judged by its earlier evaluations."""
    import math

    from trainwell.tune.trial import objective

    rows = [{"step": 10, "eval/accuracy": 0.9}, {"step": 20, "eval/accuracy": "nan"}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    value, step = objective(tmp_path, "eval/accuracy", True, "best")
    assert math.isnan(value) and step == 20
    assert objective(tmp_path / "missing", "eval/accuracy", True, "best") == (None, None)
