from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from trainwell.report import assets

STATIC = ("report.css", "report.js", "page.html")


def test_static_files_load_through_importlib_resources() -> None:
    for name in STATIC:
        text = files("trainwell.report").joinpath("static", name).read_text(encoding="utf-8")
        assert text.strip() and assets.asset(name) == text
    assert "svg.chart" in assets.stylesheet() and "render-ok" in assets.script()


def test_page_inlines_the_stylesheet_and_escapes_the_title() -> None:
    page = assets.html_page("a <b> & c", "<p>body $x</p>", style=".extra{}", scripts="<script>1</script>")
    assert "<title>a &lt;b&gt; &amp; c</title>" in page
    assert f"<style>{assets.stylesheet()}.extra{{}}</style>" in page
    assert "<p>body $x</p>\n<script>1</script>\n</body></html>" in page  # a $ in the body is left alone


def test_an_asset_that_would_close_its_element_early_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "bad.js").write_text("var s = '</SCRIPT>';")
    monkeypatch.setattr(assets, "files", lambda _package: tmp_path)
    assets.asset.cache_clear()
    try:
        with pytest.raises(ValueError, match="bad.js"):
            assets.asset("bad.js")
    finally:
        assets.asset.cache_clear()


@pytest.mark.slow  # builds a wheel: a few seconds
@pytest.mark.skipif(shutil.which("git") is None, reason="needs the repository")
def test_a_built_wheel_ships_the_static_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300, check=False)
    if run.returncode != 0 and "No module named" in run.stderr:
        pytest.skip(f"cannot build a wheel here: {run.stderr.strip()[-200:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = tmp_path.glob("trainwell-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"trainwell/report/static/{n}" for n in STATIC} <= names
