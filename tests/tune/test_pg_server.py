"""The test PostgreSQL server (conftest.py's `postgres_url`, pgserver.py) works as an Optuna storage
the way `trainwell tune --storage postgresql://...` uses one: separate processes join one study.

The parent creates Optuna's tables before the workers start. Two processes that initialise
`RDBStorage` at the same moment on an *empty* database race in Optuna's unguarded
`metadata.create_all` (psycopg2 UniqueViolation on "pg_type_typname_nsp_index"; about three runs
in four here): that is for `trainwell tune` to handle, not for this server test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

N_TRIALS = 10  # per worker
WORKERS = 2

# One worker: imports, says it is ready, waits for the go file, then creates or loads the study
# (both at once) and runs its trials. Prints the trial numbers it got, as JSON.
WORKER = """
import json, sys, time
from pathlib import Path
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, barrier, wid, n = sys.argv[1:6]
barrier = Path(barrier)
(barrier / f"ready-{wid}").touch()
deadline = time.monotonic() + 60
while not (barrier / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("worker: no go signal within 60 s")
    time.sleep(0.005)
study = optuna.create_study(storage=url, study_name=name, load_if_exists=True, direction="minimize")
numbers = []
def objective(trial):
    numbers.append(trial.number)
    time.sleep(0.01)  # let the two workers' trials interleave
    return (trial.suggest_float("x", -10.0, 10.0) - 2.0) ** 2
study.optimize(objective, n_trials=int(n))
print(json.dumps(numbers))
"""


def test_postgres_url_is_a_live_postgresql_database(postgres_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    try:
        assert engine.dialect.name == "postgresql"
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
            assert "PostgreSQL" in conn.execute(sqlalchemy.text("SELECT version()")).scalar()
    finally:
        engine.dispose()


def test_two_processes_share_one_optuna_study(postgres_url: str, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    name = f"pg-share-{uuid.uuid4().hex[:12]}"
    storage = optuna.storages.RDBStorage(postgres_url)  # creates Optuna's tables (see docstring)
    argv = [sys.executable, "-c", WORKER, postgres_url, name, str(tmp_path)]
    try:
        procs = [
            subprocess.Popen(
                [*argv, str(w), str(N_TRIALS)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in range(WORKERS)
        ]
        try:
            deadline = time.monotonic() + 60
            while not all((tmp_path / f"ready-{w}").exists() for w in range(WORKERS)):
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    break  # a worker died or hangs: its output says why, below
                time.sleep(0.01)
            (tmp_path / "go").touch()
            outputs = [p.communicate(timeout=90) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
        for w, (p, (_out, err)) in enumerate(zip(procs, outputs, strict=True)):
            assert p.returncode == 0, f"worker {w} failed (rc {p.returncode}):\n{err[-3000:]}"

        per_worker = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert [len(n) for n in per_worker] == [N_TRIALS] * WORKERS
        got = sorted(n for numbers in per_worker for n in numbers)
        assert got == list(range(WORKERS * N_TRIALS)), f"trial numbers per worker: {per_worker}"

        # What the storage holds: one study of that name, its 20 trials complete, numbered 0..19.
        assert [s.study_name for s in storage.get_all_studies()].count(name) == 1
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        assert len(trials) == WORKERS * N_TRIALS
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert sorted(t.number for t in trials) == list(range(WORKERS * N_TRIALS))
        assert len({t._trial_id for t in trials}) == WORKERS * N_TRIALS
    finally:
        storage.engine.dispose()
