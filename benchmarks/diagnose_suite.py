"""The diagnosis suite's confusion table: every broken and healthy training of
tests/diagnose/diag_cases.py diagnosed once, in one process, one thread.

For each case: the finding listed first (the diagnosis's answer) against the one expected,
and for the healthy ones whether any finding is high or medium. Prints the markdown of
docs/diagnose.md's table ("confusion table") and, with --cases, one line per case.

    PYTHONPATH=src python benchmarks/diagnose_suite.py            # ~2 min on a quiet 2-core CPU
    PYTHONPATH=src python benchmarks/diagnose_suite.py --cases --only batchnorm
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "diagnose"))
from diag_cases import CASES, Case, config  # noqa: E402

from trainwell.diagnose import diagnose  # noqa: E402

STEPS = 30  # as tests/diagnose/test_diag_suite.py


def run(case: Case, root: Path) -> tuple[list[tuple[str, str]], list[str], float]:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the short run's progress lines
        d = diagnose(config(case), task=case.make(), run_dir=root / case.name.replace("/", "_"), steps=STEPS)
    return [(f.id, f.severity) for f in d.findings], d.not_checked, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", action="store_true", help="also print one line per case")
    ap.add_argument("--only", default="", help="only the cases whose name contains this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    lines, total, failures = [], 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if args.only not in case.name:
                continue
            found, not_checked, seconds = run(case, Path(tmp))
            total += seconds
            top = found[0][0] if found else "(none)"
            expected = case.expected or "healthy"
            if case.expected is None:
                alarm = [f"{i} ({s})" for i, s in found if s in ("high", "medium")]
                answer = "no high/medium" if not alarm else "alarm: " + ", ".join(alarm)
                ok = not alarm
            else:
                answer, ok = top, top == case.expected
            ok = ok and not not_checked
            failures += not ok
            rows[expected][answer] += 1
            shown = ", ".join(f"{i} ({s})" for i, s in found) or "no finding"
            lines.append(f"| {'ok' if ok else '**wrong**'} | `{case.name}` | {shown} | {seconds:.1f} |"
                         + (f" could not check: {not_checked}" if not_checked else ""))
    print("| expected | cases | finding listed first (healthy: any high or medium) |")
    print("|---|---|---|")
    for expected, answers in rows.items():
        cells = ", ".join(f"{'`' + a + '`' if ' ' not in a else a} x{n}" for a, n in answers.most_common())
        print(f"| `{expected}` | {sum(answers.values())} | {cells} |")
    print(f"\n{len(lines)} cases, {failures} wrong, {total:.0f} s of diagnosis (torch {torch.__version__}, "
          f"1 thread)")
    if args.cases:
        print("\n| | case | findings, in the order listed | s |\n|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
