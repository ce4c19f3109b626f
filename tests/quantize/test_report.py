"""The report's quantisation section warns when a layer's outliers grow."""

from __future__ import annotations

from trainwell.quantize.report import quantize_html


def test_growing_outliers_are_a_warning_in_the_section(tmp_path):
    rows = [{"step": s, "inst/outlier_in_max_std/blocks.3.mlp.proj": v, "inst/outlier_in_kurt/blocks.3.mlp.proj": 4.0,
             "inst/outlier_in_max_std/blocks.0.attn.qkv": 5.0}
            for s, v in ((0, 5.0), (64, 47.0), (128, 46.0))]
    html = quantize_html(tmp_path, rows)
    assert 'id="outliers-growing"' in html and "blocks.3.mlp.proj" in html
    assert "5 at step 0 -&gt; 46 at step 128" in html
    assert "47 (step 64)" in html  # the peak column
    assert 'id="quantize-verdict"' not in html  # no quantize.json yet


def test_nothing_to_show_is_no_section(tmp_path):
    assert quantize_html(tmp_path, [{"step": 0, "train/loss": 1.0}]) == ""
    (tmp_path / "quantize.json").write_text("{not json")
    assert "could not be read" in quantize_html(tmp_path, [])
