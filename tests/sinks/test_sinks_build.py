from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from trainwell.errors import TrainwellError
from trainwell.sinks import (
    METRICS_FILE,
    TENSORBOARD_DIR,
    JsonlSink,
    MLflowSink,
    TensorBoardSink,
    WandbSink,
    build_sinks,
    read_jsonl,
)
from trainwell.sinks.config import LogConfig

CONFIG = {"optim": {"lr": 1e-3, "betas": [0.9, 0.95]}, "seed": 0}


def _close(sinks: list) -> None:
    for s in sinks:
        s.close()


def test_jsonl_only_when_everything_is_off(tmp_path: Path) -> None:
    sinks = build_sinks(LogConfig(tensorboard=False), tmp_path)
    assert [type(s) for s in sinks] == [JsonlSink]
    sinks[0].write(1, {"train/loss": 1.0})
    _close(sinks)
    assert read_jsonl(tmp_path / METRICS_FILE) == [{"step": 1, "train/loss": 1.0}]
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def test_tensorboard_flag(tmp_path: Path) -> None:
    sinks = build_sinks(LogConfig(tensorboard=True), tmp_path)
    assert [type(s) for s in sinks] == [JsonlSink, TensorBoardSink]
    _close(sinks)
    assert any((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))


@pytest.mark.parametrize(("flag", "module"), [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_missing_extra_is_a_clear_error(
    flag: str, module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(TrainwellError) as e:
        build_sinks(LogConfig(tensorboard=False, **{flag: True}), tmp_path, CONFIG)
    assert str(e.value).startswith(
        f"log.{flag} = true needs the '{module}' extra: pip install 'trainwell[{module}]'"
    )


class FakeMlflow(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, Any]] = []

    def set_tracking_uri(self, uri: str) -> None:
        self.calls.append(("uri", uri))

    def start_run(self, run_name: str) -> object:
        self.calls.append(("start", run_name))
        return object()

    def log_params(self, params: dict) -> None:
        self.calls.append(("params", params))

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.calls.append(("metrics", step, metrics))

    def end_run(self) -> None:
        self.calls.append(("end", None))


def test_mlflow_sink_logs_params_metrics_and_ends_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    sinks = build_sinks(LogConfig(tensorboard=False, mlflow=True), tmp_path / "run-7", CONFIG)
    assert isinstance(sinks[1], MLflowSink)
    sinks[1].write(4, {"train/loss": 0.5})
    _close(sinks)
    _close(sinks)
    assert fake.calls == [
        ("uri", (tmp_path / "mlruns").resolve().as_uri()),
        ("start", "run-7"),
        ("params", {"optim.lr": 1e-3, "optim.betas": [0.9, 0.95], "seed": 0}),
        ("metrics", 4, {"train/loss": 0.5}),
        ("end", None),
    ]


def test_mlflow_keeps_a_configured_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    MLflowSink(tmp_path, {}).close()
    assert [c[0] for c in fake.calls] == ["start", "params", "end"]


def test_wandb_sink_is_offline_under_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[dict, int]] = []
    finished: list[bool] = []
    init_kwargs: dict[str, Any] = {}

    class Run:
        def log(self, metrics: dict, step: int) -> None:
            logged.append((metrics, step))

        def finish(self) -> None:
            finished.append(True)

    def init(**kwargs: Any) -> Run:
        init_kwargs.update(kwargs)
        return Run()

    fake = types.ModuleType("wandb")
    fake.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "run-3"
    sink = WandbSink(run_dir, CONFIG)
    sink.write(2, {"eval/accuracy": 0.9})
    sink.close()
    sink.close()
    assert init_kwargs["mode"] == "offline" and init_kwargs["dir"] == str(run_dir)
    assert init_kwargs["config"] == CONFIG and init_kwargs["name"] == "run-3"
    assert logged == [({"eval/accuracy": 0.9}, 2)] and finished == [True]


def test_failed_build_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    opened: list[JsonlSink] = []
    real_init = JsonlSink.__init__

    def spy(self: JsonlSink, path: Path) -> None:
        real_init(self, path)
        opened.append(self)

    monkeypatch.setattr(JsonlSink, "__init__", spy)
    with pytest.raises(TrainwellError):
        build_sinks(LogConfig(tensorboard=False, wandb=True), tmp_path, CONFIG)
    assert opened and opened[0]._file.closed
