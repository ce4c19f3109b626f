"""The bench problems' three splits (train, validation, test): disjoint, fixed by their own
seeds; the final runs' test metric recorded and reported for deepobs; and the choice of a
setting never reading the test split."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from trainwell.bench import bench, read_results
from trainwell.bench.heldout import TEST_FILE
from trainwell.bench.problems import PROBLEMS, TEST_FRACTION, Problem
from trainwell.bench.results import table, verdicts
from trainwell.config import resolve
from trainwell.data.corpus import stdlib_files, stdlib_root
from trainwell.data.split import held_out_by_hash, split_by_hash
from trainwell.tasks import build_task


def _task(problem: str, seed: int = 0, **task: object):
    raw = PROBLEMS.get(problem).run_config()
    raw["seed"] = seed
    raw["task"] = {**raw["task"], **task}
    return build_task(resolve(raw))


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@pytest.mark.parametrize("problem", ["digits_2c2d", "digits_vae"])
def test_digits_problems_have_three_disjoint_splits_fixed_by_their_own_seeds(problem):
    task = _task(problem)
    train, val, test = task.train_idx, task.test_idx, task.heldout_test_idx
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    n = len(train) + len(val) + len(test)
    assert n == 1797 and len(test) == round(TEST_FRACTION * n)
    assert len(task.test_data()) == len(test) and len(task.eval_data()) == len(val)
    # every class in the test split, about as often as in the data
    labels = task.test_data().tensors[1] if problem == "digits_2c2d" else None
    if labels is not None:
        assert len(torch.unique(labels)) == 10
    # fixed: another run seed, another build, the same splits
    again = _task(problem, seed=7)
    for a, b in [(train, again.train_idx), (val, again.test_idx), (test, again.heldout_test_idx)]:
        assert np.array_equal(a, b)
    # validation holds the same images with or without a test split
    without = _task(problem, test_fraction=0.0)
    assert np.array_equal(without.test_idx, val) and without.test_data() is None
    assert np.array_equal(np.sort(np.concatenate([train, test])), without.train_idx)


def test_the_quadratic_test_split_is_a_separate_draw_of_its_noise():
    task = _task("quadratic_deep")
    train, val, test = (d.tensors[0] for d in (task.train_data(), task.eval_data(), task.test_data()))
    assert test.shape == val.shape == (1000, 100)
    assert not _rows(test) & _rows(val) and not _rows(test) & _rows(train)
    assert abs(float(test.std()) - 0.6) < 0.01  # the same noise, drawn again
    again = _task("quadratic_deep", seed=3)
    assert torch.equal(again.test_data().tensors[0], test) and torch.equal(again.eval_data().tensors[0], val)


def test_the_byte_problem_holds_out_test_files_beside_the_validation_files():
    files = stdlib_files(stdlib_root())
    train_all, val = split_by_hash(files, 0.1)
    train, test = held_out_by_hash(train_all, 0.1, TEST_FRACTION)
    assert not set(test) & set(val) and not set(test) & set(train) and set(train) | set(test) == set(train_all)
    assert 0.05 < len(test) / len(files) < 0.15
    assert held_out_by_hash(train_all, 0.1, TEST_FRACTION) == (train, test)  # a stable hash, not Python's
    task = _task("bytes_char")
    assert task.split.n_test_files == len(test) and task.split.n_val_files == len(val)
    assert len(task.test_data()) > 0
    without = _task("bytes_char", test_fraction=0.0)
    assert np.array_equal(without.split.val, task.split.val) and without.test_data() is None


def _registered(p: Problem):
    """``p`` among the problems for the length of a test."""
    PROBLEMS.add(p.name, p, p.help)
    yield p.name
    PROBLEMS._items.pop(p.name)
    PROBLEMS._help.pop(p.name)


@pytest.fixture
def tiny_quadratic():
    yield from _registered(Problem("tiny_quadratic_split", "quadratic, 60 steps", {"task": {"name": "quadratic"},
                           "train": {"steps": 60, "batch_size": 32, "eval_every": 20}}, "eval/loss", False,
                           "quadratic_deep"))


def _plant(run_dir: str, value: float) -> None:
    """A test record for a run, as if it had been evaluated on the test split."""
    (Path(run_dir) / TEST_FILE).write_text(json.dumps({"step": 60, "metrics": {"test/loss": value}, "missing": None}))


def test_deepobs_reports_the_test_metric_of_the_setting_chosen_on_validation(tiny_quadratic, tmp_path):
    spec = {"bench": {"problems": [tiny_quadratic], "algorithms": ["sgd"], "protocol": "deepobs", "lr_points": 3}}
    out = io.StringIO()
    root = bench(spec, out_dir=tmp_path / "b", out=out)
    assert "test loss" in out.getvalue()
    runs, tab = read_results(root)
    final = [r for r in runs if r["role"] == "final"]
    search = [r for r in runs if r["role"] == "search"]
    assert len(final) == 10 and len(search) == 2
    for r in final:
        assert r["value_split"] == "validation" and r["test_metric"] == "test/loss"
        assert isinstance(r["test_value"], float) and r["test_missing"] is None
        assert r["test_value"] != r["value"]  # another draw of the noise
    for r in search:  # the grid was never evaluated on the test split
        assert r["test_value"] is None and not (Path(r["run_dir"]) / TEST_FILE).exists()
    line = tab["lines"][0]
    assert line["split"] == "test" and line["reported_metric"] == "test/loss" and line["n"] == 10
    assert line["mean"] == pytest.approx(statistics.fmean(r["test_value"] for r in final))
    assert line["val_mean"] == pytest.approx(statistics.fmean(r["value"] for r in final))
    from trainwell.bench.report import write_bench_report
    from trainwell.bench.show import render_text, to_json

    text = render_text(runs, tab)
    assert "test/loss on the test split, of the setting chosen on validation (eval/loss); lower is better" in text
    assert "test mean" in text and "val mean" in text
    assert "<th>test mean</th>" in write_bench_report(root).read_text()
    assert all("test_value" in r for r in to_json(runs, tab)["runs"])

    # adversarial test values on every grid point (the best on validation is the worst on
    # test): the chosen setting and the runs reported stay the validation-best ones
    grid = [r for r in runs if r["rerun_of"] is None and r["value"] is not None]
    by_val = sorted(grid, key=lambda r: r["value"])
    for rank, r in enumerate(by_val):
        _plant(r["run_dir"], 1000.0 - rank)
    test_best = min(grid, key=lambda r: 1000.0 - by_val.index(r))
    assert test_best["params"]["optim.lr"] != by_val[0]["params"]["optim.lr"]
    bench(spec, out_dir=root, out=io.StringIO())
    runs2, tab2 = read_results(root)
    final2 = [r for r in runs2 if r["role"] == "final"]
    assert {r["params"]["optim.lr"] for r in final2} == {by_val[0]["params"]["optim.lr"]}
    assert tab2["lines"][0]["lr"] == by_val[0]["params"]["optim.lr"]


def _row(schedule: str, role: str, value: float, test_value: float, seed: int) -> dict:
    return {"problem": "p", "algorithm": "adam", "schedule": schedule, "metric": "eval/loss",
            "test_metric": "test/loss", "higher_is_better": False, "state": "complete", "role": role,
            "value": value, "test_value": test_value, "interventions_total": 0, "interventions": {},
            "rerun_of": None if seed == 0 else 0, "params": {}, "seed": seed}


def test_budget_chooses_the_schedule_on_validation_whatever_the_test_values_say():
    # warmup_cosine is better on validation, constant on test: the choice must follow validation
    rows = [_row("constant", "final", 2.0 + s / 100, 0.5 + s / 100, s) for s in range(3)]
    rows += [_row("warmup_cosine", "final", 1.0 + s / 100, 9.0 + s / 100, s) for s in range(3)]
    rows += [_row("constant", "search", 50.0, 0.0, 0)]  # a search run's test value, if one leaked in
    lines = table(rows, "budget")
    chosen = verdicts(lines)["problems"]["p"]["algorithms"]["adam"]
    assert chosen["schedule"] == "warmup_cosine" and chosen["mean"] == pytest.approx(9.01)
    constant = next(x for x in lines if x["schedule"] == "constant")
    assert constant["n"] == 3 and constant["mean"] == pytest.approx(0.51)  # search rows are not reported


@pytest.fixture
def tiny_digits():
    yield from _registered(Problem("tiny_digits_split", "digits MLP, 40 steps", {"task": {"name": "digits"},
                           "train": {"steps": 40, "batch_size": 32, "eval_every": 20}}, "eval/accuracy", True, "-"))


def test_the_test_value_comes_from_the_weights_the_run_evaluated(tiny_digits, tmp_path, monkeypatch):
    """Schedule-free's evaluation weights are rebuilt from its state, so its test value is
    recorded; a submission that keeps its averaged weights outside its state_dict cannot be
    rebuilt, and says so instead of reporting the wrong weights' number."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    root = bench({"bench": {"problems": [tiny_digits], "seeds": 1,
                            "algorithms": ["schedulefree_adamw", "my_submission:make_submission"]}},
                 out_dir=tmp_path / "b", out=io.StringIO())
    runs, tab = read_results(root)
    by = {r["algorithm"]: r for r in runs}
    free = by["schedulefree_adamw"]
    assert free["test_metric"] == "test/accuracy" and 0.0 < free["test_value"] <= 1.0 and free["test_missing"] is None
    sub = by["my_submission:make_submission"]
    assert sub["test_value"] is None and "does not reproduce the run's last eval/accuracy" in sub["test_missing"]
    assert all(x["split"] == "validation" for x in tab["lines"])  # oneshot reports validation


def test_a_metric_that_samples_gets_a_test_value_that_does_not_change(tmp_path):
    """The VAE's nelbo draws its latent at every evaluation: the rebuilt model agrees with the
    run within that noise, and the test value is evaluated with a fixed seed."""
    from trainwell.bench.heldout import evaluate_test

    p = Problem("tiny_vae_split", "digits VAE, 40 steps", {"task": {"name": "digits-vae"},
                "train": {"steps": 40, "batch_size": 32, "eval_every": 20}}, "eval/nelbo", False, "-")
    PROBLEMS.add(p.name, p, p.help)
    try:
        root = bench({"bench": {"problems": [p.name], "algorithms": ["adam"], "seeds": 1}},
                     out_dir=tmp_path / "b", out=io.StringIO())
    finally:
        PROBLEMS._items.pop(p.name)
        PROBLEMS._help.pop(p.name)
    (run,), _ = read_results(root)
    assert run["test_missing"] is None and run["test_value"] > 0
    (Path(run["run_dir"]) / TEST_FILE).unlink()
    assert evaluate_test(run["run_dir"], "eval/nelbo")["metrics"]["test/nelbo"] == run["test_value"]
