"""The user-model example of docs/mup.md runs and prints what the page shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "mup.md"


def test_the_user_model_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("```python\n") + len("```python\n")
    code = text[start:text.index("```", start)]
    after = text[text.index("Its output:", start):]
    shown_start = after.index("```\n") + 4
    shown = after[shown_start:after.index("```", shown_start)]
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": src, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == shown
