"""The README's Python example runs exactly as written and learns the task."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def example_block() -> str:
    text = README.read_text()
    m = re.search(r"<!-- example:fit[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "the README lost its fit example"
    return m.group(1)


def test_readme_fit_example_runs(tmp_path, monkeypatch, capsys):
    code = example_block()
    assert len(code.strip().splitlines()) <= 14  # "about 10 lines"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    result = scope["result"]
    assert result.metrics["eval/accuracy"] > 0.95
    assert (result.run_dir / "metrics.jsonl").exists()
    assert str(result.run_dir) in capsys.readouterr().out
