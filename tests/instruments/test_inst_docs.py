"""The runnable example of docs/instruments.md runs and prints what the page shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "instruments.md"


def _blocks(text: str, lang: str) -> list[str]:
    parts = text.split(f"```{lang}\n")[1:]
    return [p[: p.index("```")] for p in parts if "```" in p]


def test_the_runner_example_prints_what_the_page_shows(tmp_path) -> None:  # noqa: ANN001
    text = DOC.read_text(encoding="utf-8")
    code = next(b for b in _blocks(text, "python") if "InstrumentRunner(" in b)
    after = text[text.index(code) + len(code):]
    after = after[after.index("Its output:"):]
    start = after.index("```\n") + 4
    shown = after[start : after.index("```", start)].splitlines()
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env={"PYTHONPATH": src, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = out.stdout.splitlines()
    # the same lines in the same order; numbers may differ in the last digit across CPUs
    assert [ln.split()[:2] for ln in printed] == [ln.split()[:2] for ln in shown]
    assert printed[-1] == shown[-1]  # the histogram's element count and edge bins
    assert printed[-2] == "no warnings"
