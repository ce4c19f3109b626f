"""Outliers: per-layer max/std and kurtosis of inputs and weights, against a brute-force
reference (forward hooks, numpy, scipy), and read back from a run's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from inst_helpers import ClsTask, cls_batch, mlp
from scipy import stats

from trainwell.instruments import InstrumentRunner, InstrumentsConfig
from trainwell.instruments.outliers import last_measurement, series


def _reference(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    inputs = {}
    handles = [m.register_forward_pre_hook(lambda _m, a, n=n: inputs.setdefault(n, a[0].detach()))
               for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    out = {}
    for name, t in inputs.items():
        for kind, a in (("in", t), ("w", model.get_submodule(name).weight.detach())):
            a = a.double().numpy().ravel()
            out[f"inst/outlier_{kind}_max_std/{name}"] = float(np.abs(a).max() / a.std())
            out[f"inst/outlier_{kind}_kurt/{name}"] = float(stats.kurtosis(a, fisher=False))
    return out


def test_outliers_match_a_brute_force_reference():
    model, task = mlp(), ClsTask()
    with torch.no_grad():
        model[0].weight[0, 0] = 5.0  # one outlier weight
    x, y = cls_batch(n=12)
    x[3, 2] = 40.0  # one outlier input feature
    cfg = InstrumentsConfig(preset="off", include=("outliers",), every=1, max_samples=12)
    runner = InstrumentRunner(model, task, cfg, strict=True)
    task.loss(model, (x, y)).sum.backward()
    runner.before_update(0, (x, y), 1.0, 0.1)
    metrics = runner.after_update(0)  # no optimizer step: the weights are the ones measured
    expected = _reference(model, x)
    for k, v in expected.items():
        assert metrics[k] == pytest.approx(v, rel=1e-4), k
    assert metrics["inst/outlier_in_max_std"] == pytest.approx(
        max(v for k, v in expected.items() if k.startswith("inst/outlier_in_max_std/")), rel=1e-6)
    assert metrics["inst/outlier_in_max_std/0"] > 3.0 and metrics["inst/outlier_w_kurt/0"] > 10.0


def test_the_newest_measurement_and_the_series_are_read_from_metrics(tmp_path):
    rows = [
        {"step": 0, "train/loss": 1.0},
        {"step": 10, "inst/outlier_in_max_std/fc": 4.0, "inst/outlier_in_kurt/fc": 3.0},
        {"step": 20, "inst/outlier_in_max_std/fc": 9.0, "inst/outlier_in_kurt/fc": 5.0},
        {"step": 20, "eval/accuracy": 0.9},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    last = last_measurement(tmp_path)
    assert last is not None and last.step == 20
    assert last.layers == {"fc": {"in_max_std": 9.0, "in_kurt": 5.0}}
    assert series(rows, "in_max_std") == {"fc": [(10, 4.0), (20, 9.0)]}
    assert last_measurement(tmp_path / "missing") is None
