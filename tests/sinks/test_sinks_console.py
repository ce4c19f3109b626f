from __future__ import annotations

import io

import pytest
from rich.console import Console

from trainwell.sinks import ConsoleProgress, progress_enabled


def test_disabled_update_prints_nothing_and_log_prints_plainly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bar = ConsoleProgress(100, enabled=False)
    for step in range(50):
        bar.update(step, loss=2.0, lr=1e-3, rate=1000.0)
    assert capsys.readouterr().out == ""
    bar.log("eval/loss 1.93")
    bar.close()
    assert capsys.readouterr().out == "eval/loss 1.93\n"


def test_enabled_shows_step_loss_lr_rate() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with ConsoleProgress(20, enabled=True, unit="tokens", console=console) as bar:
        bar.update(7, loss=2.3456, lr=3e-4, rate=12345.0)
        bar.log("[guard] skipped update 7: loss spike")
    text = out.getvalue()
    assert "7/20" in text and "loss 2.346" in text and "lr 0.0003" in text
    assert "12,345 tokens/s" in text and "ETA" in text
    # Brackets in messages are printed as they are, not read as rich markup.
    assert "[guard] skipped update 7: loss spike" in text


def test_close_twice_is_safe() -> None:
    console = Console(file=io.StringIO(), force_terminal=True)
    bar = ConsoleProgress(5, enabled=True, console=console)
    bar.close()
    bar.close()
    bar.update(1, 1.0, 1.0, 1.0)  # after close: ignored


def test_progress_enabled_setting() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_enabled("on", io.StringIO()) is True
    assert progress_enabled("off", Tty()) is False
    assert progress_enabled("auto", Tty()) is True
    assert progress_enabled("auto", io.StringIO()) is False
