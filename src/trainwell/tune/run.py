"""``tune(study)``: make or continue a study, run its trials with N local workers while a
live line says how it goes, then analyse it. Killed at any moment and run again, it
continues: finished trials are kept, interrupted ones resume from their checkpoints."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from trainwell.errors import ConfigError
from trainwell.tune.config import Study, load_study
from trainwell.tune.records import StudyView, TrialRecord
from trainwell.tune.study import (
    Handle,
    counts,
    default_dir,
    enqueue_reruns,
    load_handle,
    open_study,
    read_view,
    reclaim_stale,
)
from trainwell.tune.worker import start_workers, threads_per_worker, work


@dataclass
class StudyResult:
    """A study's trials and the Playbook's analysis of them."""

    study_dir: Path
    view: StudyView
    analysis: Any

    @property
    def trials(self) -> list[TrialRecord]:
        return self.view.trials

    @property
    def best(self) -> TrialRecord | None:
        ranked = self.view.ranked()
        return ranked[0] if ranked else None

    @property
    def warnings(self) -> list[str]:
        return list(self.analysis.warnings)

    def to_json(self) -> dict[str, Any]:
        from trainwell.tune.show import to_json

        return to_json(self.view, self.analysis)


def tune(
    study: str | Path | Mapping[str, Any] | Study,
    *,
    overrides: Sequence[str] = (),
    study_dir: str | Path | None = None,
    workers: int = 1,
    storage: str | None = None,
    trials: int | None = None,
    rerun_best: int = 0,
    seeds: int = 0,
    out: TextIO | None = None,
) -> StudyResult:
    """Run (or continue) a study: a TOML path, a dict or a Study, with the run config and a
    ``[tune]`` table. ``workers`` trials run at once here; ``storage`` (an RDB URL such as
    postgresql://...) lets processes on other machines join. ``rerun_best`` K and ``seeds``
    S then rerun the K best trials with S more seeds each."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if rerun_best < 0 or seeds < 0 or bool(rerun_best) != bool(seeds):
        raise ConfigError("--rerun-best K and --seeds S go together, both >= 1 (e.g. --rerun-best 3 --seeds 3)")
    out = out or sys.stdout
    s = load_study(study, overrides, trials=trials)
    d = Path(study_dir) if study_dir is not None else default_dir(s.tune.name)
    d.mkdir(parents=True, exist_ok=True)
    # the other workers start now and load torch while this process makes the study
    early = start_workers(d, storage, workers - 1, first=1, threads=threads_per_worker(workers))
    h = open_study(s, d, storage)
    print(f"trainwell tune: study {s.tune.name!r} in {d} ({h.metric}, "
          f"{'higher' if h.higher_is_better else 'lower'} is better; sampler {s.tune.sampler}, "
          f"{workers} worker{'s' if workers > 1 else ''} x {threads_per_worker(workers)} thread(s))", file=out)
    _run_all(h, workers, out, early)
    if rerun_best:
        added = enqueue_reruns(h, rerun_best, seeds)
        print(f"trainwell tune: {added} seed reruns of the {rerun_best} best trials", file=out)
        _run_all(h, workers, out)
    return result(h)


def result(h: Handle) -> StudyResult:
    from trainwell.tune.analysis import analyse

    view = read_view(h)
    return StudyResult(h.study_dir, view, analyse(view))


def _run_all(h: Handle, workers: int, out: TextIO, started: list[Any] | None = None) -> None:
    """Run the waiting slots; a worker that died leaves its trial running: reclaim it and
    go again (at most three rounds, so that a trial that kills its process cannot loop).
    ``started``: worker processes already started for the first round."""
    reclaimed = reclaim_stale(h)
    if reclaimed:
        print(f"trainwell tune: {len(reclaimed)} interrupted trial(s) will resume from their checkpoints", file=out)
    threads = threads_per_worker(workers)
    for _ in range(3):
        with LiveView(h, workers, out), _threads(threads):
            # this process is worker 0 (torch is loaded here already); the others run beside it
            others = started if started is not None else start_workers(
                h.study_dir, h.storage_url, workers - 1, first=1, threads=threads)
            started = None
            work(h, h.study_dir / "workers" / "worker-0.log")
            for p in others:
                p.join()
        if not reclaim_stale(h):
            return


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LiveView:
    """One line each time the study changes: trials done, running, infeasible, the best so
    far, and the time left at the pace so far."""

    def __init__(self, h: Handle, workers: int, out: TextIO, every_s: float = 1.0) -> None:
        self.h, self.workers, self.out, self.every_s = h, workers, out, every_s
        self._stop = threading.Event()
        self._last = ""
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="trainwell-tune-live", daemon=True)

    def __enter__(self) -> LiveView:
        self._reader = load_handle(self.h.study_dir, self.h.storage_url)  # its own storage connection
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._print()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._print()
            except Exception:  # a storage hiccup must not end the study
                continue

    def _print(self) -> None:
        line = self.line(read_view(self._reader), counts(self._reader))
        if line != self._last:
            self._last = line
            print(line, file=self.out, flush=True)

    def line(self, view: StudyView, c: dict[str, int]) -> str:
        done = c["complete"] + c["infeasible"] + c["failed"] + c["pruned"]
        total = done + c["running"] + c["waiting"]
        parts = [f"[{done}/{total}] {c['complete']} complete"]
        parts += [f"{c[k]} {k}" for k in ("infeasible", "failed", "pruned") if c[k]]
        parts.append(f"{c['running']} running")
        ranked = view.ranked()
        if ranked:
            parts.append(f"best {view.metric} {ranked[0].value:.4g} (trial {ranked[0].number})")
        durations = [t.duration_s for t in view.trials if t.duration_s]
        left = c["running"] + c["waiting"]
        if durations and left:
            per = sum(durations) / len(durations)
            eta = per * left / max(1, min(self.workers, left))
            parts.append(f"ETA {_clock(eta)}")
        return " | ".join(parts)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"
