"""The LR range test: the analysis on synthetic curves, the plot, and real sweeps."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from diag_helpers import ArrayTask, config, digits_arrays, mlp

from trainwell.config import load_config
from trainwell.diagnose.lr_find import LRFindResult, analyse, lr_range_test, plot, smooth
from trainwell.errors import ConfigError


def sweep(n: int = 80) -> list[float]:
    return [1e-6 * (1e7) ** (i / (n - 1)) for i in range(n)]


def test_smooth_is_a_debiased_ema() -> None:
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert math.isinf(smooth([1.0, math.nan, 1.0])[-1])


def test_analyse_a_valley() -> None:
    lrs = sweep()
    # flat, then falling between 1e-4 and 1e-2, then blowing up past 1e-1
    losses = [2.0 - 1.5 / (1 + math.exp(-3 * (math.log10(x) + 3))) + (50 * (x - 0.1) if x > 0.1 else 0) for x in lrs]
    r = analyse(lrs, losses, LRFindResult(Path(".")))
    assert r.found and r.min_loss_lr is not None and r.diverged_lr is not None
    assert r.suggested_lr == pytest.approx(r.min_loss_lr / 10)
    assert 1e-4 < r.steepest_lr < 1e-2  # type: ignore[operator]
    assert r.suggested_lr < r.diverged_lr


def test_analyse_a_flat_curve_finds_nothing() -> None:
    r = analyse(sweep(), [2.3] * 80, LRFindResult(Path(".")))
    assert not r.found and r.suggested_lr is None and "no good learning rate" in r.message
    r = analyse(sweep(3), [math.nan] * 3, LRFindResult(Path(".")))
    assert not r.found and "NaN" in r.message


def test_plot_is_valid_svg() -> None:
    lrs = sweep(20)
    r = analyse(lrs, [2.0 - 0.05 * i for i in range(19)] + [math.inf], LRFindResult(Path(".")))
    root = ET.fromstring(plot(r, 1e-3))
    assert root.tag.endswith("svg") and any(e.tag.endswith("polyline") for e in root.iter())


def test_digits_suggestion_is_near_the_tuned_default(tmp_path: Path) -> None:
    cfg = load_config(overrides=["task.name=digits"])
    r = lr_range_test(cfg, run_dir=tmp_path)
    tuned = cfg.optim.lr  # the task's tuned default (3e-3)
    assert r.found and r.suggested_lr is not None
    assert tuned / 10 <= r.suggested_lr <= tuned * 10, r.message
    assert r.diverged_lr is not None and r.diverged_lr > r.suggested_lr
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggested_lr"] == r.suggested_lr and saved["configured_lr"] == tuned
    assert (tmp_path / "lr_find.svg").read_text().startswith("<svg")


def test_broken_loss_finds_no_good_lr(tmp_path: Path) -> None:
    x, y = digits_arrays()
    r = lr_range_test(config(), task=ArrayTask(x, y, lambda: mlp(2), "shuffled"), run_dir=tmp_path, steps=60)
    assert not r.found and r.suggested_lr is None
    assert "no good learning rate" in r.message
    assert json.loads((tmp_path / "lr_find.json").read_text())["found"] is False


def test_detached_loss_finds_no_good_lr(tmp_path: Path) -> None:
    x, y = digits_arrays()
    r = lr_range_test(config(), task=ArrayTask(x, y, lambda: mlp(2), "detached"), run_dir=tmp_path, steps=20)
    assert not r.found and "no gradient" in r.message


def test_bad_range_is_a_config_error(tmp_path: Path) -> None:
    x, y = digits_arrays()
    t = ArrayTask(x, y, lambda: mlp(2))
    with pytest.raises(ConfigError, match="min-lr"):
        lr_range_test(config(), task=t, run_dir=tmp_path, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ConfigError, match="steps"):
        lr_range_test(config(), task=t, run_dir=tmp_path, steps=3)
