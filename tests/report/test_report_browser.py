"""The report in a real browser: headless Chromium loads it offline, every chart draws
without a JavaScript error, and a screenshot comes out.

How "no JS error" is checked: the page's script appends ``<div id="render-ok">`` only when
every chart drew without an exception and ``window.onerror`` never fired; ``--dump-dom``
prints the DOM after the load (scripts included), so the marker must be in it. Chromium's
own log (``--enable-logging=stderr``) must also show no uncaught error from the page.
Skipped when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from trainwell.report import write_report

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]
TIMEOUT_S = 120
"""Chromium starts in 2-5 s on an idle machine; a loaded 2-core CI box can be ten times slower."""

pytestmark = [
    pytest.mark.slow,  # two browser launches: several seconds
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"),
]


def _chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{name}"  # a fresh profile per launch: no lock clash
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _page_errors(stderr: str) -> list[str]:
    """Console errors from the page in Chromium's log (its own dbus/GPU noise is ignored)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_report_renders_in_headless_chromium(synthetic_run: Path, tmp_path: Path) -> None:
    url = write_report(synthetic_run).resolve().as_uri()

    dom = _chromium(tmp_path, "dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="render-ok"' in dom.stdout, "a chart failed to draw or a JS error fired: " + dom.stdout[-2000:]
    assert not _page_errors(dom.stderr)
    assert dom.stdout.count("<svg") >= 20  # the charts are really in the DOM, drawn by the script

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not _page_errors(run.stderr)


def test_a_broken_chart_is_caught_by_the_check(synthetic_run: Path, tmp_path: Path) -> None:
    """The check can fail: a panel whose data the script cannot draw leaves no marker."""
    page = write_report(synthetic_run)
    head, rest = page.read_text().split('<script type="application/json" id="report-data">', 1)
    blob, tail = rest.split("</script>", 1)
    data = json.loads(blob)
    data["panels"][0]["series"] = None
    page.write_text(head + '<script type="application/json" id="report-data">' + json.dumps(data) + "</script>" + tail)
    dom = _chromium(tmp_path, "broken", "--dump-dom", page.resolve().as_uri())
    assert dom.returncode == 0
    assert 'id="render-ok"' not in dom.stdout
    assert "Some charts failed" in dom.stdout
