"""trainwell bench end to end on tiny problems: the plan per protocol, results that
regenerate, noise-aware verdicts, user submissions, bad input, kill -9."""

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

from trainwell.bench import bench, read_results
from trainwell.bench.config import load_bench, plan
from trainwell.bench.problems import PROBLEMS, Problem
from trainwell.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny():
    """Two tiny problems (a few seconds of runs in all), registered for this test only."""
    added = [
        Problem("tiny_quadratic", "quadratic, 60 steps", {"task": {"name": "quadratic"},
                "train": {"steps": 60, "batch_size": 32, "eval_every": 20}}, "eval/loss", False, "quadratic_deep"),
        Problem("tiny_digits", "digits MLP, 40 steps", {"task": {"name": "digits"},
                "train": {"steps": 40, "batch_size": 32, "eval_every": 20}}, "eval/accuracy", True, "-",
                target=0.5, max_runtime_s=60.0),
    ]
    for p in added:
        PROBLEMS.add(p.name, p, p.help)
    yield [p.name for p in added]
    for p in added:
        PROBLEMS._items.pop(p.name)
        PROBLEMS._help.pop(p.name)


def test_the_plan_of_each_protocol():
    cfg = load_bench({"bench": {"problems": ["quadratic_deep"], "algorithms": ["sgd", "adam"], "seeds": 4}})
    studies = plan(cfg)
    assert [(s.problem.name, s.algorithm) for s in studies] == [("quadratic_deep", "sgd"), ("quadratic_deep", "adam")]
    adam = studies[1].study
    assert adam["optim"]["name"] == "adam" and adam["optim"]["betas"] == [0.9, 0.999]
    assert adam["tune"]["space"] == {"seed": {"choice": [0, 1, 2, 3]}} and studies[1].rerun_seeds == 0
    assert adam["clip"]["max_norm"] == 0.0 and adam["schedule"]["name"] == "constant"
    deepobs = plan(load_bench({"bench": {"problems": ["quadratic_deep"], "algorithms": ["adam"],
                                         "protocol": "deepobs"}}))[0]
    assert deepobs.study["tune"]["grid_points"] == 36 and deepobs.rerun_seeds == 9
    assert deepobs.study["tune"]["space"] == {"optim.lr": {"log": [1e-5, 1e2]}}
    budget = plan(load_bench({"bench": {"problems": ["quadratic_deep"], "algorithms": ["adam"],
                                        "protocol": "budget", "budget": "medium"}}))
    assert [s.schedule for s in budget] == ["constant", "warmup_cosine", "cosine_restarts", "trapezoidal"]
    assert all(s.study["tune"]["trials"] == 50 and s.study["tune"]["sampler"] == "random" for s in budget)
    assert budget[1].study["schedule"] == {"name": "warmup_cosine", "warmup_steps": 40, "min_lr_ratio": 0.0}
    assert "optim.betas[0]" in budget[0].study["tune"]["space"]  # AlgoPerf's NAdamW space


def test_the_autopilot_flies_the_runs_unless_the_benchmark_says_otherwise(tiny, tmp_path, monkeypatch):
    """bench.autopilot = false: the algorithm alone. Every protocol's runs get the guards off;
    a run that blows up (SGD at lr 10 on the quadratic) is then infeasible with no
    intervention, where the autopilot steps in by default."""
    for protocol in ("oneshot", "deepobs", "budget", "algoperf"):
        on, off = (plan(load_bench({"bench": {"problems": ["quadratic_deep"], "algorithms": ["sgd"],
                                              "protocol": protocol, "autopilot": a}}))[0] for a in (True, False))
        assert "guards" not in on.study and off.study["guards"] == {"enabled": False}, protocol
    (tmp_path / "hot_sgd.py").write_text(
        "import torch\n\n\ndef make(groups, hp, steps):\n    return torch.optim.SGD(groups, lr=10.0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = {}
    for autopilot in (True, False):
        root = bench({"bench": {"problems": tiny[:1], "algorithms": ["hot_sgd:make"], "seeds": 1,
                                "autopilot": autopilot}}, out_dir=tmp_path / f"b{autopilot}", out=io.StringIO())
        lines[autopilot] = read_results(root)[1]["lines"][0]
    assert lines[True]["infeasible"] == 1 and lines[True]["interventions"] > 0
    assert lines[False]["infeasible"] == 1 and lines[False]["interventions"] == 0


def test_every_problem_of_a_bench_file_at_once():
    with pytest.raises(ConfigError) as e:
        load_bench({"bench": {"problems": ["quadratic", "digits_2c2d"], "algorithms": ["adamm", "sgd"],
                              "protocol": "algoperff", "colour": 1}, "tune": {}})
    text = "\n".join(e.value.problems)
    assert "bench.protocol" in text and "bench.colour: unknown key" in text and "[tune]" in text
    with pytest.raises(ConfigError) as e:
        load_bench({"bench": {"problems": ["quadratic"], "algorithms": ["adamm", "sgd"]}})
    text = "\n".join(e.value.problems)
    assert "unknown benchmark problem 'quadratic'" in text and "'adamm'" in text


def test_oneshot_runs_seeds_and_writes_results_that_regenerate(tiny, tmp_path):
    out = io.StringIO()
    root = bench({"bench": {"problems": tiny, "algorithms": ["sgd", "adam"], "seeds": 2}},
                 out_dir=tmp_path / "b", out=out)
    runs, table = read_results(root)
    assert len(runs) == 8
    assert {(r["problem"], r["algorithm"], r["seed"]) for r in runs} == {
        (p, a, s) for p in tiny for a in ("sgd", "adam") for s in (0, 1)}
    for r in runs:
        assert r["state"] == "complete" and r["role"] == "final" and isinstance(r["value"], float)
        assert (Path(r["run_dir"]) / "summary.json").is_file()
    # the seed really differs between the two runs of one algorithm
    pair = [r for r in runs if r["problem"] == "tiny_digits" and r["algorithm"] == "adam"]
    assert pair[0]["value"] != pair[1]["value"] or pair[0]["run_dir"] != pair[1]["run_dir"]
    lines = {(x["problem"], x["algorithm"]): x for x in table["lines"]}
    assert lines[("tiny_quadratic", "sgd")]["n"] == 2
    scores = table["scores"]["oneshot"]["problems"]
    assert set(scores) == set(tiny)
    for problem in tiny:
        verdicts = {a: v["verdict"] for a, v in scores[problem]["algorithms"].items()}
        assert sorted(verdicts.values())[0] in ("best", "tie") and "best" in verdicts.values()
    from trainwell.bench.report import write_bench_report

    page = write_bench_report(root).read_text()
    assert page.count("<svg") == 2 and "tiny_quadratic" in page and "data-curve=\"eval/accuracy\"" in page
    assert "<td>best</td>" in page
    # running again on the same folder runs nothing
    again = io.StringIO()
    bench({"bench": {"problems": tiny, "algorithms": ["sgd", "adam"], "seeds": 2}}, out_dir=root, out=again)
    assert again.getvalue().count("done before") == 4
    with pytest.raises(ConfigError, match="another \\[bench\\] table"):
        bench({"bench": {"problems": tiny, "algorithms": ["sgd"], "seeds": 2}}, out_dir=root, out=io.StringIO())


def test_deepobs_grid_then_ten_seeds_of_the_best(tiny, tmp_path):
    root = bench({"bench": {"problems": tiny[:1], "algorithms": ["sgd"], "protocol": "deepobs", "lr_points": 4}},
                 out_dir=tmp_path / "b", out=io.StringIO())
    runs, table = read_results(root)
    grid = [r for r in runs if r["rerun_of"] is None]
    # DeepOBS's grid from 1e-5 to 1e2, here with 4 points: a factor of 10^(7/3) apart
    assert sorted(r["params"]["optim.lr"] for r in grid) == pytest.approx([1e-5, 2.1544347e-3, 0.46415888, 100.0])
    final = [r for r in runs if r["role"] == "final"]
    assert len(final) == 10 and len({r["seed"] for r in final}) == 10
    chosen = min((r for r in grid if r["value"] is not None), key=lambda r: r["value"])
    assert all(r["params"]["optim.lr"] == chosen["params"]["optim.lr"] for r in final)
    from trainwell.bench.report import write_bench_report

    page = write_bench_report(root).read_text()
    assert "learning-rate sensitivity" in page and page.count("<svg") == 2
    line = table["lines"][0]
    assert line["n"] == 10 and 0.0 < line["stable_lr_fraction"] <= 1.0 and line["lr"] == chosen["params"]["optim.lr"]


def test_a_user_submission_runs_and_its_eval_swap_is_used(tiny, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    root = bench({"bench": {"problems": tiny[1:], "algorithms": ["my_submission:make_submission"], "seeds": 1}},
                 out_dir=tmp_path / "b", out=io.StringIO())
    runs, _ = read_results(root)
    assert len(runs) == 1 and runs[0]["state"] == "complete" and runs[0]["value"] > 0.2
    import my_submission
    import torch

    w = torch.nn.Parameter(torch.ones(2))
    opt = my_submission.make_submission([{"params": [w]}], {"lr": 0.1}, 10)
    w.grad = torch.ones(2)
    opt.step()
    trained = w.detach().clone()
    opt.eval()
    assert torch.allclose(w, 0.99 * torch.ones(2) + 0.01 * trained)  # the averaged weights are in place
    opt.train()
    assert torch.equal(w, trained)


def test_a_submission_that_returns_no_optimizer_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "bad_sub.py").write_text("def make_submission(groups, hp, steps):\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from trainwell.api import train

    with pytest.raises(ConfigError, match="returned int, not a torch.optim.Optimizer"):
        train({"task": {"name": "quadratic"}, "optim": {"name": "bad_sub:make_submission"},
               "train": {"steps": 30}}, run_dir=tmp_path / "r", progress=False)


@pytest.mark.slow
def test_kill_9_then_the_same_command_finishes_the_benchmark(tmp_path):
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "trainwell", "bench", "--set", 'bench.problems=["quadratic_deep"]',
           "--set", 'bench.algorithms=["sgd", "adam", "momentum"]', "--set", "bench.seeds=2", "--out", str(out),
           "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    studies = out / "studies" / "quadratic_deep"
    while time.monotonic() < deadline and not list(studies.glob("adam/trials/*/checkpoints/step-*")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quadratic_deep / sgd: done before" in done.stdout
    shown = json.loads(subprocess.run([sys.executable, "-m", "trainwell", "bench", "show", str(out), "--json"],
                                      env=env, capture_output=True, text=True, check=True).stdout)
    assert len(shown["runs"]) == 6 and all(r["state"] == "complete" for r in shown["runs"])
    for key in ("problem", "algorithm", "protocol", "seed", "metric", "value", "time_to_target_s", "reached", "state"):
        assert key in shown["runs"][0]
    assert set(shown["scores"]) == {"oneshot"}


def test_algoperf_times_runs_to_the_target_and_scores_them(tiny, tmp_path):
    with pytest.raises(ConfigError, match="'tiny_quadratic' has no validation target"):
        load_bench({"bench": {"problems": tiny, "protocol": "algoperf"}})
    cfg = {"bench": {"problems": ["tiny_digits"], "algorithms": ["sgd", "adam"], "protocol": "algoperf",
                     "studies": 2, "study_trials": 2, "reference": "adam"}}
    studies = plan(load_bench(cfg))
    assert [(s.algorithm, s.study_index) for s in studies] == [("sgd", 0), ("sgd", 1), ("adam", 0), ("adam", 1)]
    assert studies[1].study["tune"]["seed"] == 1 and studies[1].study["seed"] == 1
    assert studies[1].study["log"]["every"] == 1 and studies[1].study["schedule"]["name"] == "warmup_cosine"
    root = bench(cfg, out_dir=tmp_path / "b", out=io.StringIO())
    runs, table = read_results(root)
    assert len(runs) == 8
    for r in runs:
        if r["reached"]:
            # the time is the sum of the steps' times up to the first evaluation at the target
            rows = [json.loads(x) for x in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
            first = next(x["step"] for x in rows if x.get("eval/accuracy", 0) >= 0.5)
            spent = sum(x.get("sys/step_time_s", 0.0) for x in rows if x["step"] <= first)
            assert r["time_to_target_s"] == pytest.approx(spent)
        else:
            assert r["time_to_target_s"] is None and r["missed"]
    adam = [r for r in runs if r["algorithm"] == "adam"]
    assert all(r["reached"] for r in adam)  # adam at its defaults passes 50% on the digits in 40 steps
    adam_line = next(x for x in table["lines"] if x["algorithm"] == "adam")
    assert len(adam_line["study_times_s"]) == 2 and adam_line["ratio_to_fastest_ci"] is not None
    low, high = adam_line["ratio_to_fastest_ci"]
    assert 0 < low <= high
    scores = table["scores"]["algoperf"]
    assert scores["score"]["adam"] > 0 and set(scores["score"]) == {"sgd", "adam"}
    assert scores["speedup"]["adam"] == pytest.approx(1.0)
    from trainwell.bench.report import write_bench_report
    from trainwell.bench.show import render_text

    assert "performance profiles" in write_bench_report(root).read_text()
    assert "time to target" in render_text(runs, table)


def test_a_submission_may_bring_its_own_schedule(tmp_path, monkeypatch):
    (tmp_path / "halving_sub.py").write_text(
        "import torch\n\n"
        "class Halving(torch.optim.SGD):\n"
        "    def __init__(self, groups, lr, steps):\n"
        "        super().__init__(groups, lr=lr)\n"
        "        self.steps = steps\n\n"
        "    def lr_factor(self, step):\n"
        "        return 1.0 if step < self.steps // 2 else 0.5\n\n"
        "def make_submission(groups, hp, steps):\n"
        "    return Halving(groups, hp['lr'], steps)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from trainwell.api import train

    train({"task": {"name": "quadratic"}, "optim": {"name": "halving_sub:make_submission", "lr": 0.01},
           "train": {"steps": 40, "eval_every": 20}, "log": {"every": 1, "tensorboard": False}},
          run_dir=tmp_path / "r", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["train/lr"] for r in rows if "train/lr" in r}
    assert lrs[10] == pytest.approx(0.01) and lrs[30] == pytest.approx(0.005)


def test_budget_searches_each_schedule_then_reruns_the_best_with_ten_seeds(tiny, tmp_path):
    cfg = {"bench": {"problems": tiny[:1], "algorithms": ["adam"], "protocol": "budget",
                     "schedules": ["constant", "cosine_restarts"]}}
    root = bench(cfg, out_dir=tmp_path / "b", out=io.StringIO())
    runs, table = read_results(root)
    for schedule in ("constant", "cosine_restarts"):
        mine = [r for r in runs if r["schedule"] == schedule]
        assert len([r for r in mine if r["rerun_of"] is None]) == 25  # the small budget
        final = [r for r in mine if r["role"] == "final"]
        assert len(final) == 10 and len({json.dumps(r["params"], sort_keys=True) for r in final}) == 1
    verdict = table["scores"]["budget"]["problems"]["tiny_quadratic"]["algorithms"]["adam"]
    best = min((x for x in table["lines"] if x["mean"] is not None), key=lambda x: x["mean"])
    assert verdict["schedule"] == best["schedule"]  # an algorithm is judged with its best schedule


def test_algoperf_self_tuning_runs_the_defaults_once_per_study(tiny, tmp_path):
    cfg = {"bench": {"problems": ["tiny_digits"], "algorithms": ["adam"], "protocol": "algoperf",
                     "ruleset": "self", "studies": 2, "reference": "adam"}}
    root = bench(cfg, out_dir=tmp_path / "b", out=io.StringIO())
    runs, table = read_results(root)
    assert len(runs) == 2 and {r["seed"] for r in runs} == {0, 1}
    assert all(r["params"] == {"seed": r["seed"]} for r in runs)  # nothing searched
    assert table["scores"]["algoperf"]["score"]["adam"] == pytest.approx(1.0)


def test_time_to_target_counts_steps_and_weight_swaps_not_evaluations(tmp_path):
    from trainwell.bench.algoperf import time_to_target

    rows = [{"step": 1, "sys/step_time_s": 0.5}, {"step": 2, "sys/step_time_s": 0.25},
            {"step": 2, "eval/accuracy": 0.4, "sys/eval_swap_s": 0.125},
            {"step": 3, "sys/step_time_s": 1.0}, {"step": 3, "eval/accuracy": 0.9, "sys/eval_swap_s": 0.0625},
            {"step": 4, "sys/step_time_s": 8.0}, {"step": 4, "eval/accuracy": 0.95}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert time_to_target(tmp_path, "eval/accuracy", 0.8, True, None) == (0.5 + 0.25 + 0.125 + 1.0 + 0.0625, None)
    t, why = time_to_target(tmp_path, "eval/accuracy", 0.8, True, 1.5)
    assert t == float("inf") and why.startswith("too slow")
    t, why = time_to_target(tmp_path, "eval/accuracy", 0.99, True, None)
    assert t == float("inf") and why == "plateaued: best eval/accuracy 0.95, target 0.99"


def test_a_schedule_free_run_logs_its_weight_swap_at_each_evaluation(tmp_path):
    from trainwell.api import train

    train({"task": {"name": "quadratic"}, "optim": {"name": "schedulefree_adamw", "lr": 0.01},
           "schedule": {"name": "constant", "warmup_steps": 0}, "train": {"steps": 20, "eval_every": 10},
           "log": {"tensorboard": False}}, run_dir=tmp_path / "r", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/loss" in r]
    assert len(evals) == 2 and all(r["sys/eval_swap_s"] >= 0 for r in evals)
    train({"task": {"name": "quadratic"}, "schedule": {"name": "constant", "warmup_steps": 0},
           "train": {"steps": 20, "eval_every": 10}, "log": {"tensorboard": False}},
          run_dir=tmp_path / "plain", progress=False)
    plain = [json.loads(x) for x in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert not any("sys/eval_swap_s" in r for r in plain)  # no swap, no key
