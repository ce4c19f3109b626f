"""The diagnosis suite (diag_cases.py): every broken training gets the right finding first,
no healthy training gets a high or medium finding, and no probe or rule fails on any of them.
benchmarks/diagnose_suite.py prints the same cases as docs/diagnose.md's confusion table."""

from __future__ import annotations

from pathlib import Path

import pytest
from diag_cases import HEALTHY, SICK, Case, config

from trainwell.diagnose import diagnose

STEPS = 30
"""The short run's steps: six instrument measurements; the cases need no more."""


def run_case(case: Case, run_dir: Path) -> list[tuple[str, str]]:
    d = diagnose(config(case), task=case.make(), run_dir=run_dir, steps=STEPS)
    assert d.not_checked == [], d.not_checked  # every probe ran
    assert not [f for f in d.findings if f.id.startswith("could_not_check")]  # every rule ran
    return [(f.id, f.severity) for f in d.findings]


def test_the_suite_is_as_large_as_promised() -> None:
    kinds = {c.kind for c in SICK}
    assert len(kinds) >= 20 and len(HEALTHY) >= 8
    assert all(sum(c.kind == k for c in SICK) >= 2 for k in kinds)  # each in several variants
    assert {c.builtin for c in SICK} == {True, False} and {c.builtin for c in HEALTHY} == {True, False}


@pytest.mark.parametrize("case", SICK, ids=lambda c: c.name)
def test_sick_training_gets_the_right_finding_first(case: Case, tmp_path: Path) -> None:
    found = run_case(case, tmp_path)
    assert found and found[0][0] == case.expected, found
    assert found[0][1] in ("high", "medium")


@pytest.mark.parametrize("case", HEALTHY, ids=lambda c: c.name)
def test_healthy_training_gets_no_high_or_medium_finding(case: Case, tmp_path: Path) -> None:
    found = run_case(case, tmp_path)
    assert all(severity == "low" for _, severity in found), found
