"""The teacher from a run directory, the checks before a distilled run starts (exit code 2,
every problem at once), and a distilled run end to end."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from trainwell.checkpoint.export import export_run, load_weights
from trainwell.cli.main import main
from trainwell.config import load_config, resolve
from trainwell.distill import DistillTask, load_teacher
from trainwell.errors import ConfigError
from trainwell.report import write_report
from trainwell.sinks import read_jsonl
from trainwell.tasks import build_plain_task, build_task
from trainwell.train.loop import run

DIGITS = ["task.name=digits", "model.depth=1", "model.width=16", "train.steps=12", "train.eval_every=6",
          "schedule.warmup_steps=2", "log.every=1", "log.progress=off"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    run(load_config(None, [*DIGITS, "ema.decay=0.9"]), run_dir=out, progress=False)
    return out


def test_the_teacher_is_the_run_newest_weights(teacher_dir, tmp_path):
    t = load_teacher(teacher_dir, "model")
    exported = load_weights(export_run(teacher_dir, tmp_path / "w.safetensors"))
    state = t.model.state_dict()
    assert set(state) == set(exported) and all(torch.equal(state[k], exported[k]) for k in state)
    assert not t.model.training and "model weights, step 12" in t.source
    ema = load_teacher(teacher_dir, "ema")
    exported = load_weights(export_run(teacher_dir, tmp_path / "e.safetensors", ema=True))
    assert all(torch.equal(ema.model.state_dict()[k], exported[k]) for k in exported)


def test_auto_picks_the_weights_that_scored_better(teacher_dir, tmp_path):
    summary = json.loads((teacher_dir / "summary.json").read_text())
    raw, ema = summary["final"]["eval/accuracy"], summary["final"]["eval_ema/accuracy"]
    auto = load_teacher(teacher_dir, "auto")
    assert ("ema weights" in auto.source) == (ema > raw)
    summary["final"]["eval_ema/accuracy"], summary["final"]["eval/accuracy"] = 1.0, 0.5
    (teacher_dir / "summary.json").write_text(json.dumps(summary))
    try:
        assert "ema weights" in load_teacher(teacher_dir, "auto").source
        summary["final"]["eval_ema/accuracy"], summary["final"]["eval/accuracy"] = 0.5, 1.0
        (teacher_dir / "summary.json").write_text(json.dumps(summary))
        assert "model weights" in load_teacher(teacher_dir, "auto").source
    finally:
        summary["final"]["eval/accuracy"], summary["final"]["eval_ema/accuracy"] = raw, ema
        (teacher_dir / "summary.json").write_text(json.dumps(summary))


def test_loading_a_teacher_leaves_the_generators_alone(teacher_dir):
    """A seeded student starts from the same weights with or without a teacher."""
    cfg = load_config(None, [*DIGITS, "model.width=8", f"distill.teacher={teacher_dir}"])
    torch.manual_seed(3)
    task = build_task(cfg)
    assert isinstance(task, DistillTask)
    with_teacher = task.build_model().state_dict()
    torch.manual_seed(3)
    alone = build_plain_task(cfg).build_model().state_dict()
    assert all(torch.equal(with_teacher[k], alone[k]) for k in alone)


def test_distilled_run_logs_both_terms_and_the_agreement(teacher_dir, tmp_path):
    cfg = load_config(None, [*DIGITS, "model.width=8", f"distill.teacher={teacher_dir}", "distill.alpha=0.7",
                             "distill.temperature=2.0"])
    result = run(cfg, run_dir=tmp_path / "student", progress=False)
    rows = read_jsonl(tmp_path / "student" / "metrics.jsonl")
    train = [r for r in rows if "train/loss/kd" in r]
    assert len(train) == 12
    for r in train:  # the logged loss is the mixture of the logged terms
        assert r["train/loss"] == pytest.approx(0.3 * r["train/loss/task"] + 0.7 * r["train/loss/kd"], rel=1e-5)
    final = result.metrics
    assert 0.0 <= final["eval/teacher_top1"] <= 1.0 and final["eval/teacher_kl"] >= 0.0
    summary = json.loads((teacher_dir / "summary.json").read_text())
    teacher_acc = summary["final"]["eval/accuracy"]  # 'auto' picked the raw weights unless EMA scored better
    assert final["eval/teacher_accuracy"] in (teacher_acc, summary["final"]["eval_ema/accuracy"])
    page = write_report(tmp_path / "student").read_text()
    assert 'id="distill-verdict"' in page and f"{100 * final['eval/teacher_top1']:.1f}%" in page
    assert 'id="distill-verdict"' not in write_report(teacher_dir, tmp_path / "teacher.html").read_text()


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_missing_teacher_is_exit_2_before_any_run_dir(capsys, tmp_path):
    code, err = run_cli(capsys, "train", *sum((["--set", s] for s in DIGITS), []),
                        "--set", f"distill.teacher={tmp_path / 'nope'}", "--run-dir", str(tmp_path / "s"))
    assert code == 2 and "distill.teacher" in err and "no such run directory" in err
    assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_a_folder_that_is_not_a_run_lists_every_problem(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = run_cli(capsys, "train", *sum((["--set", s] for s in DIGITS), []),
                        "--set", f"distill.teacher={tmp_path / 'empty'}")
    assert code == 2 and "2 problems" in err
    assert "no config.toml" in err and "no checkpoints folder" in err


def test_a_teacher_of_other_classes_is_exit_2(capsys, teacher_dir, tmp_path):
    (tmp_path / "a.txt").write_text("def f(x):\n    return x\n" * 50)
    (tmp_path / "b.txt").write_text("import os\n" * 50)
    code, err = run_cli(capsys, "train", "--set", f"task.data={tmp_path}", "--set", "task.seq_len=16",
                        "--set", "task.val_fraction=0.5", "--set", "train.steps=60",
                        "--set", f"distill.teacher={teacher_dir}", "--run-dir", str(tmp_path / "s"))
    assert code == 2, err
    assert "scores 10 classes" in err and "256" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_ema_weights_of_a_run_without_ema_are_refused(tmp_path):
    out = tmp_path / "plain"
    run(load_config(None, DIGITS), run_dir=out, progress=False)
    with pytest.raises(ConfigError, match="kept no EMA weights"):
        load_teacher(out, "ema")


def test_config_section_validates():
    with pytest.raises(ConfigError) as e:
        resolve({"task": {"name": "digits"}, "distill": {"alpha": 1.5, "temperature": 0, "weights": "best"}})
    text = str(e.value)
    assert "distill.alpha" in text and "distill.temperature" in text and "distill.weights" in text


def test_a_distilled_run_teaches_without_its_own_teacher(teacher_dir, tmp_path):
    """Only the distilled run's weights matter: its teacher is not loaded (nor needed)."""
    first = tmp_path / "first"
    shutil.copytree(teacher_dir, first)
    student = tmp_path / "student"
    run(load_config(None, [*DIGITS, "model.width=8", f"distill.teacher={first}"]), run_dir=student, progress=False)
    shutil.rmtree(first)
    t = load_teacher(student)
    assert "step 12" in t.source and t.model(torch.zeros(2, 64)).shape == (2, 10)
