"""``tune show`` (text and JSON) and the study report, from hand-built records."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from trainwell.tune.analysis import analyse
from trainwell.tune.records import Dimension, StudyView, TrialRecord
from trainwell.tune.report import write_study_report
from trainwell.tune.show import render_text, to_json

DIMS = [Dimension("optim.lr", "log", 1e-4, 1e-1), Dimension("model.act", "choice", choices=("relu", "gelu"))]
EVIL = "divergence: <script>alert('x')</script> & more"


def write_metrics(run_dir: Path, value: float, torn: bool = False) -> None:
    run_dir.mkdir(parents=True)
    lines = []
    for step in range(0, 101, 10):
        lines.append(json.dumps({"step": step, "train/loss": 2.0 * math.exp(-step / 40)}))
        if step % 50 == 0:
            lines.append(json.dumps({"step": step, "eval/accuracy": value * step / 100}))
    text = "\n".join(lines) + "\n"
    (run_dir / "metrics.jsonl").write_text(text + ('{"step": 110, "train/lo' if torn else ""))


def study(tmp_path: Path) -> StudyView:
    """Trial 0 the best (with a readable run), 1 with a missing run dir, 2 with no run dir,
    3 infeasible with markup in its reason, 4 failed, 5 running, 6 a seed rerun of 0 with
    a NaN objective."""
    write_metrics(tmp_path / "runs" / "0", 0.9, torn=True)
    trials = [
        TrialRecord(0, "complete", {"optim.lr": 3e-3, "model.act": "gelu"}, value=0.9, run_dir="runs/0",
                    interventions={"skips": 2, "rollbacks": 0}, best_step=100, steps=100),
        TrialRecord(1, "complete", {"optim.lr": 1e-3, "model.act": "relu"}, value=0.8,
                    run_dir=str(tmp_path / "gone"), best_step=50, steps=100),
        TrialRecord(2, "complete", {"optim.lr": 3e-4, "model.act": "relu"}, value=0.7, run_dir=None),
        TrialRecord(3, "infeasible", {"optim.lr": 0.08, "model.act": "gelu"}, reason=EVIL),
        TrialRecord(4, "failed", {"optim.lr": 0.05, "model.act": "relu"}, reason="RuntimeError: boom"),
        TrialRecord(5, "running", {"optim.lr": 2e-3, "model.act": "gelu"}),
        TrialRecord(6, "complete", {"optim.lr": 3e-3, "model.act": "gelu"}, value=float("nan"), rerun_of=0, seed=1),
    ]
    return StudyView(name="lr-study", study_dir=tmp_path, metric="eval/accuracy", higher_is_better=True,
                     objective="best", dims=DIMS, scientific=["model.act"], trials=trials, planned=6)


def test_to_json_shape_and_strict_json(tmp_path: Path) -> None:
    v = study(tmp_path)
    out = to_json(v, analyse(v))
    text = json.dumps(out, allow_nan=False)  # NaN/inf became null
    assert {"trials", "best", "warnings"} <= set(out)
    fields = {"number", "state", "params", "value", "run_dir", "interventions", "reason"}
    assert all(fields <= set(t) for t in out["trials"])
    assert [t["number"] for t in out["trials"]] == [0, 1, 2, 5, 3, 4, 6]  # best first, rerun last
    rerun = out["trials"][-1]
    assert rerun["value"] is None and rerun["rerun_of"] == 0
    assert out["best"]["number"] == 0 and out["best"]["interventions"] == {"skips": 2, "rollbacks": 0}
    assert out["best"]["params"] == {"optim.lr": 3e-3, "model.act": "gelu"}
    assert any("failed" in w for w in out["warnings"])
    assert json.loads(text)["counts"]["infeasible"] == 1


def test_to_json_best_is_null_without_complete_trials(tmp_path: Path) -> None:
    v = StudyView(name="s", study_dir=tmp_path, metric="eval/loss", higher_is_better=False, objective="final",
                  dims=DIMS, scientific=[], trials=[TrialRecord(0, "infeasible", {"optim.lr": 0.1},
                                                                reason="nonfinite: loss")], planned=4)
    out = to_json(v, analyse(v))
    json.dumps(out, allow_nan=False)
    assert out["best"] is None and out["trials"][0]["reason"] == "nonfinite: loss"


def test_render_text_lists_trials_best_first_and_the_warnings(tmp_path: Path) -> None:
    v = study(tmp_path)
    text = render_text(v, analyse(v))
    rows = [line.split()[:2] for line in text.splitlines() if re.match(r"^\d+\s+(complete|infeasible|failed|running)", line)]
    assert rows == [["0", "complete"], ["1", "complete"], ["2", "complete"], ["5", "running"],
                    ["3", "infeasible"], ["4", "failed"]]
    assert "skips=2" in text and "rollbacks" not in text  # only interventions that happened
    assert "warnings:" in text and "1 trial failed (RuntimeError: 1; trials 4)" in text
    assert "isolation" in text and "gelu" in text


def test_report_is_self_contained_with_an_svg_per_dimension(tmp_path: Path) -> None:
    v = study(tmp_path)
    a = analyse(v)
    path = write_study_report(v, a, tmp_path / "out")
    assert path == tmp_path / "out" / "study.html"
    page = path.read_text(encoding="utf-8")
    for dim in DIMS:
        assert len(re.findall(rf'<svg [^>]*data-dim="{re.escape(dim.key)}"', page)) == 1
    assert 'data-scientific="model.act"' in page
    # no fetch at view time: no external script, stylesheet, image or font
    assert not re.search(r'\s(src|href)=', page)
    assert re.findall(r"https?://[^\s\"'<]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg ")


def test_report_marks_infeasible_points_and_escapes_reasons(tmp_path: Path) -> None:
    v = study(tmp_path)
    page = write_study_report(v, analyse(v), tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in page and "alert('x')" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    lr_plot = re.search(r'<svg [^>]*data-dim="optim.lr".*?</svg>', page, re.S)
    assert lr_plot is not None
    crosses = re.findall(r'<path class="pt (infeasible|failed)"[^>]*><title>([^<]*)', lr_plot.group(0))
    assert [c[0] for c in crosses] == ["infeasible", "failed"]  # never hidden, marked apart
    assert "trial 3 (infeasible)" in crosses[0][1] and "&lt;script&gt;" in crosses[0][1]
    assert len(re.findall(r'<circle class="pt complete"', lr_plot.group(0))) == 3


def test_report_survives_missing_runs_and_draws_readable_curves(tmp_path: Path) -> None:
    v = study(tmp_path)
    page = write_study_report(v, analyse(v), tmp_path / "study.html").read_text(encoding="utf-8")
    assert 'data-curve="train/loss"' in page and 'data-curve="eval/accuracy"' in page
    curve = re.search(r'<svg [^>]*data-curve="train/loss".*?</svg>', page, re.S)
    assert curve is not None and curve.group(0).count("<polyline") == 1  # trial 0 only
    assert "trial 1: no metrics.jsonl in" in page
    assert "trial 2: no run directory recorded" in page


def test_report_without_any_complete_trial(tmp_path: Path) -> None:
    v = StudyView(name="s", study_dir=tmp_path, metric="eval/loss", higher_is_better=False, objective="best",
                  dims=DIMS, scientific=["optim.lr"], trials=[], planned=3)
    page = write_study_report(v, analyse(v), tmp_path).read_text(encoding="utf-8")
    assert "only 0 of 3 planned trials are complete" in page
    assert page.count('data-dim="') == 2
