"""The report in a real browser: headless Chromium loads it offline, the script wires every
chart without a JavaScript error, its buttons, slider and crosshair work, and a screenshot
comes out.

How "no JS error" is checked: the page's script appends ``<div id="render-ok">`` only when
every chart was wired without an exception and ``window.onerror`` never fired;
``--dump-dom`` prints the DOM after the load (scripts included), so the marker must be in
it. Chromium's own log (``--enable-logging=stderr``) must also show no uncaught error from
the page. The interactions are checked by a probe script appended to a copy of the page:
it clicks, moves the mouse, and writes what it saw into ``<pre id="probe">`` as JSON.
Skipped when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
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
    assert dom.stdout.count('<svg class="chart') >= 20  # the charts drawn in Python are in the DOM

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not _page_errors(run.stderr)


def test_a_broken_chart_is_caught_by_the_check(synthetic_run: Path, tmp_path: Path) -> None:
    """The check can fail: a chart whose hover data is missing cannot be wired, and the page says so."""
    page = write_report(synthetic_run)
    page.write_text(page.read_text().replace(' data-x="', ' data-gone="', 1))
    dom = _chromium(tmp_path, "broken", "--dump-dom", page.resolve().as_uri())
    assert dom.returncode == 0
    assert 'id="render-ok"' not in dom.stdout
    assert "Some charts failed: chart-1" in dom.stdout


PROBE = """
(function () {
  var out = {};
  var loss = document.getElementById("chart-1"), svg = loss.querySelector("svg.chart");
  function displays(sel) { return Array.prototype.map.call(loss.querySelectorAll(sel), function (e) { return getComputedStyle(e).display; }); }
  var scale = loss.querySelector('button[data-toggle="scale"]');
  out.scale = [[scale.textContent, displays("g.yscale")]];
  scale.click(); out.scale.push([scale.textContent, displays("g.yscale")]);
  var smooth = loss.querySelector('button[data-toggle="smooth"]');
  function look() { return [smooth.textContent, getComputedStyle(loss.querySelector("polyline.smooth")).display,
                            getComputedStyle(loss.querySelector("polyline.raw")).strokeOpacity]; }
  out.smooth = [look()]; smooth.click(); out.smooth.push(look());
  // clientX is a whole pixel: rounded, it lands within half a pixel of the step
  function hover(panel, x) {  // the tooltip's rows with the mouse at data value x
    var chart = panel.querySelector("svg.chart"), map = chart.getAttribute("data-xmap").split(" ").map(Number);
    var r = chart.getBoundingClientRect(), px = map[0] + (x - map[2]) / (map[3] - map[2]) * (map[1] - map[0]);
    chart.dispatchEvent(new MouseEvent("mousemove", {clientX: Math.round(r.left + px * r.width / chart.viewBox.baseVal.width), clientY: r.top + 40}));
    var tip = panel.querySelector(".tip"), cross = chart.querySelector("line.crosshair");
    return {rows: tip.style.display === "block" ? Array.prototype.map.call(tip.children, function (e) { return e.textContent; }) : null,
            cross: [cross.getAttribute("visibility"), Number(cross.getAttribute("x1")), px]};
  }
  var seen = hover(loss, AT);
  out.tip = seen.rows; out.cross = seen.cross;
  var tip = loss.querySelector(".tip"), cross = svg.querySelector("line.crosshair");
  svg.dispatchEvent(new MouseEvent("mouseleave"));
  out.left = [tip.style.display, cross.getAttribute("visibility")];
  var hist = document.getElementById("hist-grad_hist1d"), input = hist.querySelector("input");
  input.value = "0"; input.dispatchEvent(new Event("input"));
  out.frames = Array.prototype.map.call(hist.querySelectorAll("g.frame"), function (g) { return getComputedStyle(g).display; });
  out.slider = hist.querySelector(".slider span").textContent;
  out.bin = hover(hist, BIN).rows;
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
"""


def test_buttons_slider_and_crosshair_work(synthetic_run: Path, tmp_path: Path) -> None:
    """The log/linear and smoothing buttons switch what shows, the slider switches the
    histogram's step, and the crosshair's tooltip reads the values at the mouse."""
    at = 300  # a step after the rollback: its value is the one the run kept
    page = write_report(synthetic_run)
    probe = PROBE.replace("AT", str(at)).replace("BIN", "0.1")  # the middle bin: 1024 counts at step 0
    page.write_text(page.read_text().replace("</body>", f"<script>{probe}</script></body>"))
    dom = _chromium(tmp_path, "probe", "--window-size=1280,2000", "--dump-dom", page.resolve().as_uri())
    assert dom.returncode == 0 and 'id="render-ok"' in dom.stdout, dom.stdout[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    out = json.loads(unescape(found.group(1)))

    assert out["scale"] == [["log y", ["inline", "none"]], ["linear y", ["none", "inline"]]]
    assert out["smooth"] == [["smoothed", "inline", "0.3"], ["raw", "none", "1"]]
    rows = [json.loads(line) for line in (synthetic_run / "metrics.jsonl").read_text().splitlines()]
    kept = {r["step"]: r for r in rows if "train/loss" in r}  # the last logged value of a step wins
    evals = {r["step"]: r for r in rows if "eval/loss" in r}
    assert out["tip"] == [f"step {at}", f"train: {kept[at]['train/loss']:.4g}", f"eval: {evals[at]['eval/loss']:.4g}",
                          f"eval (EMA weights): {evals[at]['eval_ema/loss']:.4g}"]
    visibility, x, px = out["cross"]
    assert visibility == "visible" and abs(x - px) < 0.2
    assert out["left"] == ["none", "hidden"]
    assert out["frames"] == ["inline"] + ["none"] * 4 and out["slider"] == "step 0"
    assert out["bin"] == ["gradient 0.1", "count: 1024"]  # the shown frame's count, not the last step's
