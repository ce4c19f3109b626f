"""The study file and its space: every problem reported at once, values mapped to the
config, deterministic point sequences."""

from __future__ import annotations

import math

import pytest

from trainwell.errors import ConfigError
from trainwell.tune.config import load_study
from trainwell.tune.space import config_value, grid_points, points, with_params


def study(space: dict, **tune) -> dict:
    return {
        "task": {"name": "digits"},
        "train": {"steps": 50},
        "tune": {"name": "t", "trials": 8, **tune, "space": space},
    }


def test_a_valid_study_gives_its_dimensions_with_the_one_minus_parametrisation():
    s = load_study(
        study(
            {
                "optim.lr": {"log": [1e-4, 1e-1]},
                "optim.betas[0]": {"one_minus_log": [0.01, 0.5]},
                "schedule.warmup_steps": {"int": [0, 20]},
                "optim.name": {"choice": ["adamw", "lion"]},
            }
        )
    )
    kinds = {d.key: d.kind for d in s.dims}
    assert kinds == {
        "optim.lr": "log",
        "optim.betas[0]": "one_minus_log",
        "schedule.warmup_steps": "int",
        "optim.name": "choice",
    }
    beta = next(d for d in s.dims if d.key == "optim.betas[0]")
    assert config_value(beta, 0.1) == pytest.approx(0.9)
    assert beta.position(0.99) == pytest.approx(0.0) and beta.position(0.5) == pytest.approx(1.0)
    raw = with_params(s.base, {"optim.betas[0]": 0.8})
    assert raw["optim"]["betas"] == [0.8, 0.95]  # the other element keeps the config's value


def test_every_problem_of_a_study_is_reported_at_once():
    bad = study(
        {
            "optim.lrr": {"log": [1e-4, 1e-1]},  # unknown key
            "optim.momentum": {"uniform": [0.5, 1.5]},  # 1.5 is outside the field (< 1)
            "optim.eps": {"log": [0, 1e-6]},  # log with low 0
            "optim.weight_decay": {"range": [0, 1]},
        },  # unknown kind
        sampler="annealing",
        scientific=["optim.name"],
    )
    bad["tune"]["colour"] = "blue"
    with pytest.raises(ConfigError) as e:
        load_study(bad)
    text = "\n".join(e.value.problems)
    assert "'optim.lrr'" in text and "did you mean 'optim.lr'" in text
    assert "tune.sampler" in text and "unknown key 'tune.colour'" in text
    # the tune table is refused as a whole, so the space is checked on a fixed table
    with pytest.raises(ConfigError) as e:
        load_study(
            study(
                {
                    "optim.lrr": {"log": [1e-4, 1e-1]},
                    "optim.momentum": {"uniform": [0.5, 1.5]},
                    "optim.eps": {"log": [0, 1e-6]},
                    "optim.weight_decay": {"range": [0, 1]},
                },
                scientific=["optim.name"],
            )
        )
    problems = e.value.problems
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert "optim.momentum" in text and "1.5" in text
    assert "log needs low > 0" in text
    assert "expected one of" in text
    assert "tune.scientific: 'optim.name' is not a key of [tune.space]" in text


def test_a_study_file_without_a_tune_table_says_what_is_missing(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[task]\nname = "digits"\n')
    with pytest.raises(ConfigError, match=r"no \[tune\] table"):
        load_study(path)


def test_budget_and_trials_must_agree():
    with pytest.raises(ConfigError, match="disagree"):
        load_study(study({"optim.lr": {"log": [1e-4, 1e-1]}}, budget="small"))
    s = load_study(study({"optim.lr": {"log": [1e-4, 1e-1]}}, budget="small", trials=None))
    assert s.tune.planned == 25


def test_the_same_seed_draws_the_same_points_and_another_seed_others():
    s = load_study(
        study({"optim.lr": {"log": [1e-4, 1e-1]}, "optim.weight_decay": {"log": [1e-3, 1.0]}})
    )
    a = points(s.dims, s.tune, 0, 8)
    assert a == points(s.dims, s.tune, 0, 8)
    assert a[3:8] == points(s.dims, s.tune, 3, 8)  # a later start continues the same sequence
    other = load_study(
        study(
            {"optim.lr": {"log": [1e-4, 1e-1]}, "optim.weight_decay": {"log": [1e-3, 1.0]}}, seed=1
        )
    )
    assert points(other.dims, other.tune, 0, 8) != a
    assert len({p["optim.lr"] for p in a}) == 8
    for p in a:
        assert 1e-4 <= p["optim.lr"] <= 1e-1 and 1e-3 <= p["optim.weight_decay"] <= 1.0


def test_halton_covers_a_log_range_evenly():
    s = load_study(study({"optim.lr": {"log": [1e-4, 1e-0]}}, trials=64))
    logs = sorted(math.log10(p["optim.lr"]) for p in points(s.dims, s.tune, 0, 64))
    # every quarter of the log range holds a quarter of the points, +-2 (random would vary far more)
    for q in range(4):
        n = sum(-4 + q <= x < -3 + q for x in logs)
        assert 14 <= n <= 18, (q, n)


def test_random_points_are_fixed_by_index_whoever_asks():
    s = load_study(study({"optim.lr": {"log": [1e-4, 1e-1]}}, sampler="random"))
    assert points(s.dims, s.tune, 2, 5) == points(s.dims, s.tune, 0, 5)[2:]


def test_grid_enumerates_every_combination_and_sets_the_trial_count():
    s = load_study(
        study(
            {"optim.lr": {"log": [1e-3, 1e-1]}, "optim.name": {"choice": ["adamw", "lion"]}},
            sampler="grid",
            grid_points=3,
            trials=None,
        )
    )
    grid = grid_points(s.dims, 3)
    assert len(grid) == 6
    assert sorted({round(p["optim.lr"], 6) for p in grid}) == [0.001, 0.01, 0.1]
    with pytest.raises(ConfigError, match="differs from the grid's 6 points"):
        load_study(
            study(
                {"optim.lr": {"log": [1e-3, 1e-1]}, "optim.name": {"choice": ["adamw", "lion"]}},
                sampler="grid",
                grid_points=3,
                trials=5,
            )
        )
