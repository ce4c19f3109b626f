"""The report page: expected panels and markers for a rich run, omitted panels for a bare
one, findings, damaged side files, clear errors, and the CLI command."""

from __future__ import annotations

import argparse
import json
import math
import re
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

import pytest
import torch
from report_helpers import NAN_STEP, ROLLBACK_FROM, ROLLBACK_TO, SPIKE, make_run

from trainwell.cli import report_cmd
from trainwell.errors import TrainwellError
from trainwell.instruments.base import Histogram
from trainwell.report import MAX_POINTS, append_histograms, read_histograms, write_report
from trainwell.report.draw import FADED
from trainwell.report.load import load_run
from trainwell.report.panels import PanelBuilder, training_panels
from trainwell.sinks import JsonlSink

SVG = "{http://www.w3.org/2000/svg}"


def _panels(html: str) -> dict[str, str]:
    """{title: the panel's markup} for every chart panel of the page."""
    found = re.findall(r'<div class="panel" id="[^"]+"><div class="ptitle">([^<]*)</div>(.*?</svg>)</div>', html, re.S)
    assert found, "the page has chart panels"
    return {unescape(title): body for title, body in found}


def _svg(panel: str) -> ET.Element:
    return ET.fromstring(panel[panel.index("<svg"):])


def _titles(root: ET.Element, tag: str) -> list[str]:
    """The hover texts of every ``tag`` element in the chart."""
    return [t.text or "" for e in root.iter(f"{SVG}{tag}") for t in e.findall(f"{SVG}title")]


def test_rich_run_has_every_panel_and_marker(synthetic_run: Path) -> None:
    path = write_report(synthetic_run)
    assert path == synthetic_run / "report.html"
    html = path.read_text()
    panels = _panels(html)
    for title in ("Loss", "accuracy (the task's metric)", "Learning rate", "Gradient norm", "Clipped updates",
                  "Autopilot counters", "Alpha (step size)", "Distance and update size", "Gradient tests",
                  "Gradient signal-to-noise", "Hessian max eigenvalue", "Hessian trace", "TIC",
                  "Gradient noise scale", "inst/my_gauge", "Step time (s)", "Gradient elements histogram"):
        assert title in panels
    for heading in ("STEP SIZE", "GRADIENTS", "CURVATURE", "Per layer", "layer-table", 'id="logbook"'):
        assert heading in html
    assert "No findings file (run <code>trainwell diagnose</code>)" in html
    assert "report-data" not in html  # no data blob: the charts are drawn SVG

    # autopilot markers: one per (kind, step) on the event panels, the logbook message on hover
    loss = _svg(panels["Loss"])
    marks = [t for t in _titles(loss, "line") if " at step " in t]
    assert f"skip at step {NAN_STEP}: non-finite loss at step {NAN_STEP}" in marks
    assert any(t.startswith(f"quarantine at step {NAN_STEP}:") for t in marks)
    assert f"rollback at step {ROLLBACK_FROM}: rollback: too many skips" in marks
    assert any(t.startswith(f"restart at step {ROLLBACK_TO}:") for t in marks) and len(marks) == 5
    assert not any("summary" in t for t in marks)
    lr_texts = [e.text for e in _svg(panels["Learning rate"]).iter(f"{SVG}text")]
    assert "lr x0.5" in lr_texts and "lr x0.5" not in [e.text for e in loss.iter(f"{SVG}text")]  # labels on the LR panel only
    assert not [t for t in _titles(_svg(panels["Alpha (step size)"]), "line") if " at step " in t]

    # the NaN is flagged, the spike kept, the abandoned stretch drawn grey and dashed
    assert _titles(loss, "path") == [f"train = nan at step {NAN_STEP}"]
    train = next(g for g in loss.iter(f"{SVG}g") if g.get("data-label") == "train")
    values = [float(v) for v in train.get("data-y", "").split()]
    assert max(v for v in values if math.isfinite(v)) == SPIKE
    faded = [p for p in loss.iter(f"{SVG}polyline") if p.get("stroke") == FADED]
    assert faded and all(p.get("stroke-dasharray") == "6 4" for p in faded)
    assert "train (abandoned by a rollback)" in {t.text for p in faded for t in p.findall(f"{SVG}title")}

    b = PanelBuilder(load_run(synthetic_run))
    data = {p.title: p for p in training_panels(b)}
    series = data["Loss"].series[0]
    assert series.key == "train/loss" and [NAN_STEP, "nan"] in series.bad
    fade = [seg for seg in series.segs if seg.faded]
    assert fade and min(fade[0].x) <= ROLLBACK_TO and max(fade[0].x) == ROLLBACK_FROM
    assert all(len(seg.x) <= MAX_POINTS for s in data["Loss"].series for seg in s.segs)
    lr = data["Learning rate"].series[0].segs
    solid_after = [seg for seg in lr if not seg.faded and seg.x[0] == ROLLBACK_TO]
    faded_lr = [seg for seg in lr if seg.faded]
    assert solid_after[0].y[0] < faded_lr[0].y[1]  # the lower LR after the rollback shows
    clip = data["Gradient norm"].series[1]
    assert clip.key == "train/clip_norm" and clip.dash and clip.step
    gauges = {s.key for p in data.values() for s in p.series}
    assert "inst/hess_max_ev/iters" not in html and "inst/unsupported/net.1" not in gauges
    assert not any(t.startswith("grad_norm/net.") for t in panels)  # per-layer keys go to the table
    assert "net.0.weight" in html and "could not see into: net.1" in html
    assert re.findall(r'id="hist-grad_hist1d-net-[02]-weight"><div class="ptitle">([^<]*)', html) == ["net.0.weight", "net.2.weight"]
    assert "2 sample(s) quarantined &lt;b&gt;bold&lt;/b&gt;" in html  # logbook text is escaped


def test_charts_carry_their_controls(synthetic_run: Path) -> None:
    """Each chart holds what the page's script switches: both y scales where a log scale can
    show the data, the smoothed overlay of long curves, the values for the crosshair."""
    panels = _panels(write_report(synthetic_run).read_text())
    loss = panels["Loss"]
    assert 'data-toggle="scale">log y</button>' in loss and 'data-toggle="smooth">smoothed</button>' in loss
    scales = [g.get("data-scale") for g in _svg(loss).iter(f"{SVG}g") if g.get("class") == "yscale"]
    assert scales == ["log", "linear"]  # the loss spans decades: it opens on log
    assert 'data-toggle="scale"' not in panels["Clipped updates"]  # a fixed 0..1 range
    smooth = [p for p in _svg(loss).iter(f"{SVG}polyline") if p.get("class") == "smooth"]
    assert len(smooth) == 4  # on each scale two runs: the NaN at NAN_STEP breaks the line
    assert 'data-toggle="smooth"' not in panels["accuracy (the task's metric)"]  # 8 evaluations: no smoothing
    hist = panels["Gradient elements histogram"]
    assert '<input type="range" min="0" max="4" value="4"' in hist and len(_svg(hist).findall(f"{SVG}g")) >= 5
    refs = [e.text for e in _svg(panels["Gradient tests"]).iter(f"{SVG}text") if e.get("class") == "reflabel"]
    assert refs == ["1: noise = signal"] * 2  # on each y scale


def test_page_is_self_contained(synthetic_run: Path) -> None:
    html = write_report(synthetic_run).read_text()
    assert "<link" not in html and "@import" not in html and "url(http" not in html
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {"http://www.w3.org/2000/svg"}  # the SVG namespace only


def test_missing_data_panels_are_omitted(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    run.mkdir()
    sink = JsonlSink(run / "metrics.jsonl")
    for step in range(1, 30):
        sink.write(step, {"train/loss": 1.0 / step})
    sink.close()
    html = write_report(run).read_text()
    assert list(_panels(html)) == ["Loss"]
    assert "STEP SIZE" not in html and "layer-table" not in html and "<h2>System</h2>" not in html
    assert 'id="no-instruments"' in html and 'id="no-findings"' in html
    assert "The logbook is empty" in html and "no summary.json" in html
    assert "None" not in html  # facts the run did not record are left out, not printed as None
    assert 'id="marker-key"' not in html  # nothing to key


def test_findings_are_shown_worst_first_and_escaped(synthetic_run: Path) -> None:
    findings = [
        {"title": "Loss plateau", "severity": "info", "evidence": "flat for 200 steps", "fix": "raise the lr"},
        {"title": "LR too high <script>", "severity": "critical", "evidence": {"alpha_median": 1.7}, "fix": "lower optim.lr"},
    ]
    (synthetic_run / "findings.json").write_text(json.dumps(findings))
    html = write_report(synthetic_run).read_text()
    assert "No findings file" not in html
    assert html.index("LR too high &lt;script&gt;") < html.index("Loss plateau")
    assert "alpha_median: 1.7" in html and "lower optim.lr" in html


def test_damaged_side_files_are_reported_not_fatal(synthetic_run: Path) -> None:
    (synthetic_run / "findings.json").write_text("{not json")
    (synthetic_run / "summary.json").write_text("[1, 2]")
    html = write_report(synthetic_run).read_text()
    assert "findings.json: could not be read" in html and "summary.json: could not be read" in html
    assert "Training curves" in html


def test_histogram_file_round_trip_and_torn_last_line(tmp_path: Path) -> None:
    edges = torch.linspace(-2, 2, 5)
    append_histograms(tmp_path, {"grad_hist1d": Histogram(3, torch.tensor([1, 2, 3, 4]), (edges,))})
    path = tmp_path / "histograms.jsonl"
    with path.open("a") as f:
        f.write('{"step": 4, "name": "grad_hi')  # a crash mid-write
    items = read_histograms(path)
    assert items == [{"step": 3, "name": "grad_hist1d", "axes": ["gradient"],
                      "edges": [edges.tolist()], "counts": [1, 2, 3, 4]}]
    path.write_text('{"step": 1, "name": "x", "edges": [[0, 1]], "counts": [1, 2]}\n{}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_histograms(path)


@pytest.mark.parametrize("make", ["missing", "no_metrics", "empty_metrics"])
def test_not_a_run_dir_is_a_clear_error(tmp_path: Path, make: str) -> None:
    run = tmp_path / "run"
    if make != "missing":
        run.mkdir()
        (run / "config.toml").write_text("seed = 0\n")
    if make == "empty_metrics":
        (run / "metrics.jsonl").write_text("")
    with pytest.raises(TrainwellError, match=str(run).replace("\\", "\\\\")) as e:
        write_report(run)
    assert {"missing": "no such run directory", "no_metrics": "no metrics.jsonl",
            "empty_metrics": "no metric rows"}[make] in str(e.value)


def test_cli_command(synthetic_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="trainwell")
    report_cmd.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "elsewhere.html"
    args = parser.parse_args(["report", str(synthetic_run), "--out", str(out)])
    assert args.handler(args) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    with pytest.raises(TrainwellError):
        args.handler(parser.parse_args(["report", str(tmp_path / "nope")]))


def test_report_without_instruments_or_histograms(tmp_path: Path) -> None:
    run = make_run(tmp_path / "plain", instruments=False)
    html = write_report(run).read_text()
    assert 'id="no-instruments"' in html and "STEP SIZE" not in html
    assert "Learning rate" in html and "Autopilot counters" in html


def test_a_damaged_histogram_file_leaves_the_rest_of_the_page(synthetic_run: Path) -> None:
    with (synthetic_run / "histograms.jsonl").open("a") as f:
        f.write('{"step": 9, "name": "grad_hist1d", "edges": [[0, NaN]], "counts": [1]}\n{"step": 10}\n')
    html = write_report(synthetic_run).read_text()
    assert "histograms.jsonl: could not be read" in html
    assert "Gradient elements histogram" not in html and "Alpha (step size)" in html
