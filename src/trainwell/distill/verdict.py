"""The distillation verdict of a run directory, for the run report: which teacher, alpha and
T, the final agreement with the teacher, and the student's main metric against the teacher's
on the same validation batches. Read from the run's own files (config.toml's [distill], the
final evaluation in summary.json), so any distilled run has one, finished or not."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any


def distill_verdict(config: Mapping[str, Any], summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Plain data of the verdict, or None when the run had no teacher. The metric values are
    None until the run has evaluated."""
    d = config.get("distill")
    if not isinstance(d, Mapping) or not d.get("teacher"):
        return None
    s = summary or {}
    final = s.get("final") if isinstance(s.get("final"), Mapping) else {}
    metric = str(s.get("metric", "")).removeprefix("eval/")
    student = final.get(f"eval/{metric}") if metric else None
    teacher = final.get(f"eval/teacher_{metric}") if metric else None
    v: dict[str, Any] = {
        "teacher": d["teacher"], "weights": d.get("weights", "auto"),
        "alpha": d.get("alpha"), "temperature": d.get("temperature"),
        "metric": metric or None, "higher_is_better": bool(s.get("higher_is_better", False)),
        "student": student, "teacher_metric": teacher,
        "top1": final.get("eval/teacher_top1"), "kl": final.get("eval/teacher_kl"),
    }
    v["sentence"] = _sentence(v)
    return v


def _sentence(v: Mapping[str, Any]) -> str:
    student, teacher, metric = v["student"], v["teacher_metric"], v["metric"]
    if not isinstance(student, (int, float)) or not isinstance(teacher, (int, float)):
        return "No final evaluation yet: the agreement and the metrics come with it."
    gap = student - teacher
    better = gap > 0 if v["higher_is_better"] else gap < 0
    if gap == 0:
        where = f"the student matches the teacher's {metric}"
    else:
        where = (f"the student's {metric} is {abs(gap):.4g} {'better' if better else 'worse'} than the "
                 f"teacher's ({student:.4g} against {teacher:.4g})")
    agree = ""
    if isinstance(v["top1"], (int, float)) and isinstance(v["kl"], (int, float)):
        agree = (f"; it picks the teacher's most likely class on {100 * v['top1']:.1f}% of the targets, "
                 f"KL(teacher || student) {v['kl']:.4g} nats per target")
    return where[0].upper() + where[1:] + agree + "."


def verdict_html(config: Mapping[str, Any], summary: Mapping[str, Any] | None) -> str:
    """The report's 'Distillation' section ('' for a run without a teacher)."""
    v = distill_verdict(config, summary)
    if v is None:
        return ""

    def num(x: Any) -> str:
        return f"{x:.4g}" if isinstance(x, (int, float)) else "n/a"

    metric = v["metric"] or "metric"
    rows = [
        ("teacher", f"{v['teacher']} ({v['weights']} weights)"),
        ("alpha, T", f"{num(v['alpha'])}, {num(v['temperature'])}"),
        (f"student {metric}", num(v["student"])),
        (f"teacher {metric}", num(v["teacher_metric"])),
        ("top-1 agreement", f"{100 * v['top1']:.1f}%" if isinstance(v["top1"], (int, float)) else "n/a"),
        ("KL(teacher || student)", f"{num(v['kl'])} nats per target"),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(x)}</td></tr>" for k, x in rows)
    return (f'<h2>Distillation</h2><div class="card" id="distill-verdict"><p>{escape(v["sentence"])}</p>'
            f'<table class="facts">{table}</table></div>')
