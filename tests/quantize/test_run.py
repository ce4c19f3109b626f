"""``trainwell quantize`` end to end on short digits runs: the verdict, its JSON file, the
spread from sibling seeds or the bootstrap, and bad input (exit 2, every problem listed)."""

from __future__ import annotations

import json
import shutil

import pytest
from q_helpers import train_digits

from trainwell.cli.main import main
from trainwell.quantize import METHODS, VERDICT_FILE, quantize_run, render_text


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    return [train_digits(root / f"s{seed}", seed) for seed in (0, 1)]


def test_verdict_for_every_method_with_the_seed_spread(runs):
    lines = []
    verdict = quantize_run(runs[0], list(METHODS), progress=lines.append)
    data = json.loads((runs[0] / VERDICT_FILE).read_text())
    assert data == json.loads(json.dumps(verdict.to_json()))
    assert data["spread"]["how"] == "seeds" and data["spread"]["n"] == 2
    summaries = [json.loads((r / "summary.json").read_text())["final"]["eval/accuracy"] for r in runs]
    assert data["fp32_value"] == pytest.approx(summaries[0], abs=1e-9)  # the training's own evaluation
    assert data["spread"]["value"] == pytest.approx(abs(summaries[0] - summaries[1]) / 2 ** 0.5, rel=1e-6)
    for m in data["methods"]:
        assert m["available"], m
        assert m["verdict"] == "within the seed spread" if m["change_over_spread"] <= 1 else "seed spread" in m["verdict"]
        assert m["reloaded_identical"] is True
        assert m["file_bytes"] < data["fp32_file_bytes"]
        assert set(m["sqnr_db"]) == {"body.0", "body.1.fc1", "body.1.fc2", "body.2.fc1", "body.2.fc2", "head"}
        assert all(v > 10 for v in m["sqnr_db"].values())  # dB: even int4 keeps > 1.5 bits of signal
        assert m["change"] == pytest.approx(m["value"] - data["fp32_value"])
    int8 = data["methods"][0]
    assert int8["size_ratio"] > 3.0
    # the training run measured outliers: the verdict reads them from its metrics
    assert data["layers"][0]["source"].startswith("training (step ")
    text = render_text(data)
    assert "int8-dynamic" in text and "seeds" in text and "reloaded: identical outputs" in text
    assert any("int4-weight" in line for line in lines)


def test_without_siblings_the_spread_is_a_bootstrap_and_skip_keeps_a_layer(runs, tmp_path):
    alone = tmp_path / "alone"
    shutil.copytree(runs[1], alone)
    (alone / "metrics.jsonl").unlink()  # no training-time outliers: measured on an eval batch
    verdict = quantize_run(alone, ["int8-dynamic"], skip=["head"], out=tmp_path / "m.safetensors")
    data = verdict.to_json()
    assert data["spread"]["how"] == "bootstrap" and "lower bound" in data["spread"]["detail"]
    (m,) = data["methods"]
    lo, hi = m["change_ci"]
    assert lo <= m["change"] <= hi
    assert m["verdict"] == "no change beyond evaluation noise" if lo <= 0 <= hi else m["verdict"].startswith(
        ("worse: 95% interval", "better: 95% interval"))
    assert m["file"] == str(tmp_path / "m.safetensors") and m["skipped"] == ["head"]
    assert "head" not in m["sqnr_db"] and "body.0" in m["sqnr_db"]
    assert data["layers"][0]["source"] == "the first evaluation batch"


def test_bad_input_lists_every_problem_and_exits_2(runs, capsys, tmp_path):
    code = main(["quantize", str(runs[0]), "--skip", "body.0.fc9", "nothing", "--method", "int8-weight"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "2 problems" in err and "'body.0.fc9'" in err and "did you mean" in err and "'nothing'" in err
    code = main(["quantize", str(runs[0]), "--out", str(tmp_path / "x.safetensors")])
    assert code == 2 and "one --method with --out" in capsys.readouterr().err
    code = main(["quantize", str(tmp_path / "nowhere")])
    assert code == 2 and "not a trainwell run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: an unknown method
        main(["quantize", str(runs[0]), "--method", "int3"])
    assert e.value.code == 2


def test_the_run_report_shows_the_outliers_and_the_verdict(runs):
    from trainwell.report import write_report

    quantize_run(runs[1], ["int8-weight"])
    html = write_report(runs[1]).read_text()
    assert "<h2>Quantisation</h2>" in html
    assert 'id="quantize-verdict"' in html and "int8-weight" in html and "seeds" in html
    assert 'id="outlier-table"' in html and 'id="outliers-ok"' in html  # a 30-step digits run: no growth


def test_ema_weights_are_judged_against_the_ema_evaluations(runs, tmp_path, capsys):
    verdict = quantize_run(runs[0], ["int8-weight"], ema=True).to_json()
    assert verdict["weights"] == "ema" and verdict["spread"]["how"] == "seeds"
    final = json.loads((runs[0] / "summary.json").read_text())["final"]
    assert verdict["fp32_value"] == pytest.approx(final["eval_ema/accuracy"], abs=1e-9)
    assert verdict["methods"][0]["file"].endswith("int8-weight-ema.safetensors")
    no_ema = train_digits(tmp_path / "no-ema", seed=0, ema=0.0)
    code = main(["quantize", str(no_ema), "--ema", "--method", "int8-weight"])
    assert code == 2 and "kept no EMA weights" in capsys.readouterr().err


def test_a_sibling_must_share_the_training_config_but_may_log_differently(runs, tmp_path):
    import tomllib

    import tomli_w

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs[0], a)
    shutil.copytree(runs[1], b)
    config = tomllib.loads((b / "config.toml").read_text())
    config["instruments"]["every"] = 20  # instruments only read a run
    (b / "config.toml").write_text(tomli_w.dumps(config))
    assert quantize_run(a, ["int8-weight"]).spread.how == "seeds"
    config["optim"]["lr"] = 0.001  # another recipe
    (b / "config.toml").write_text(tomli_w.dumps(config))
    assert quantize_run(a, ["int8-weight"]).spread.how == "bootstrap"
