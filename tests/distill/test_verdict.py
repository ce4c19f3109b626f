"""The distillation verdict the run report shows."""

from __future__ import annotations

from trainwell.distill.verdict import distill_verdict, verdict_html

CONFIG = {"distill": {"teacher": "runs/big", "weights": "auto", "alpha": 0.5, "temperature": 2.0}}
SUMMARY = {"metric": "eval/bpb", "higher_is_better": False,
           "final": {"eval/bpb": 2.5, "eval/teacher_bpb": 2.25, "eval/teacher_top1": 0.612, "eval/teacher_kl": 0.3}}


def test_no_teacher_no_verdict():
    assert distill_verdict({"distill": {"teacher": None}}, SUMMARY) is None
    assert distill_verdict({}, SUMMARY) is None
    assert verdict_html({}, SUMMARY) == ""


def test_verdict_compares_student_and_teacher_in_the_metric_direction():
    v = distill_verdict(CONFIG, SUMMARY)
    assert (v["student"], v["teacher_metric"], v["top1"], v["kl"]) == (2.5, 2.25, 0.612, 0.3)
    assert "0.25 worse than the teacher's (2.5 against 2.25)" in v["sentence"]
    assert "61.2% of the targets" in v["sentence"]
    acc = {"metric": "eval/accuracy", "higher_is_better": True,
           "final": {"eval/accuracy": 0.97, "eval/teacher_accuracy": 0.95}}
    assert "0.02 better" in distill_verdict(CONFIG, acc)["sentence"]


def test_verdict_before_any_evaluation():
    v = distill_verdict(CONFIG, None)
    assert v["student"] is None and "No final evaluation yet" in v["sentence"]
    html = verdict_html(CONFIG, None)
    assert "runs/big (auto weights)" in html and "n/a" in html


def test_html_lists_teacher_alpha_t_and_agreement():
    html = verdict_html(CONFIG, SUMMARY)
    assert 'id="distill-verdict"' in html
    for text in ("runs/big", "0.5, 2", "student bpb", "teacher bpb", "61.2%", "0.3 nats per target"):
        assert text in html
