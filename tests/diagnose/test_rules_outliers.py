"""The growing-outliers rule: fires on a layer input that crossed the bar while growing,
not on one that was always heavy-tailed or grew but stayed below."""

from __future__ import annotations

from trainwell.diagnose.rules_outliers import outliers_growing
from trainwell.instruments.outliers import MAX_STD_BAR


def test_a_layer_whose_outliers_grow_past_the_bar_is_named():
    series = {
        "blocks.0.attn.qkv": [(0, 4.0), (64, 4.5), (128, 5.0)],
        "blocks.3.mlp.proj": [(0, 5.0), (64, 14.0), (128, MAX_STD_BAR + 4)],
    }
    f = outliers_growing(series)
    assert f is not None and f.id == "outliers_growing" and f.severity == "low"
    assert "blocks.3.mlp.proj" in f.title and "qkv" not in f.title
    assert f.evidence == {"blocks.3.mlp.proj": "input max/std 5 at step 0 -> 44 at step 128"}
    assert "--skip blocks.3.mlp.proj" in f.fix


def test_no_finding_without_growth_or_below_the_bar():
    # heavy-tailed from the start (raw input data): nothing grew
    assert outliers_growing({"body.0": [(0, 50.0), (50, 51.0)]}) is None
    # the default byte GPT's worst input: grows, but int8 is lossless there
    assert outliers_growing({"blocks.2.mlp.proj": [(0, 4.0), (900, 24.2)]}) is None
    assert outliers_growing({"fc": [(0, 40.0)]}) is None  # one reading: no trend
    assert outliers_growing({}) is None


def test_the_short_run_carries_each_layers_outlier_series(tmp_path):
    from trainwell.config import load_config
    from trainwell.diagnose.probes_train import short_run
    from trainwell.tasks import build_task

    cfg = load_config(overrides=["task.name=digits"])
    run = short_run(cfg, build_task(cfg), tmp_path, steps=10)
    assert set(run.outliers_max_std) == {"body.0", "body.1.fc1", "body.1.fc2", "body.2.fc1", "body.2.fc2", "head"}
    assert all(len(points) >= 2 and all(v > 1 for _, v in points) for points in run.outliers_max_std.values())
