"""``bench(config)``: run a benchmark's studies one after another (each with the workers),
then write its results folder: a JSON per run and a table per protocol, from which
``bench show`` and ``bench report`` regenerate everything. Killed and run again on the same
folder, it continues: finished studies are skipped, an interrupted one resumes (tune)."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from trainwell.bench.config import BenchConfig, StudyPlan, load_bench, plan
from trainwell.errors import ConfigError

BENCH_FILE = "bench.toml"


def default_out(name: str) -> Path:
    from datetime import datetime

    return Path("benchmarks") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def bench(
    source: str | Path | Mapping[str, Any] | None = None,
    *,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    workers: int = 1,
    storage: str | None = None,
    out: TextIO | None = None,
) -> Path:
    """Run (or continue) a benchmark; returns its folder."""
    from trainwell.bench.results import collect, write_results

    out = out or sys.stdout
    cfg = load_bench(source, overrides)
    root = Path(out_dir) if out_dir is not None else default_out(cfg.name)
    _check_same(cfg, root)
    plans, skipped = _runnable(plan(cfg))
    for line in skipped:
        print(f"trainwell bench: {line}", file=out)
    print(f"trainwell bench: {len(plans)} studies ({cfg.protocol}) of {len(cfg.problems)} problems x "
          f"{len(cfg.algorithms)} algorithms in {root}", file=out, flush=True)
    for i, p in enumerate(plans, 1):
        _run_study(p, root, workers, storage, f"[{i}/{len(plans)}]", out)
        _test_final_runs(p, root, storage, cfg.protocol, f"[{i}/{len(plans)}]", out)
    write_results(root, cfg, collect(root, cfg, plans))
    return root


def _check_same(cfg: BenchConfig, root: Path) -> None:
    """A folder holds one benchmark: continuing it with another config would mix results."""
    import tomli_w

    path = root / BENCH_FILE
    mine = {"bench": cfg.model_dump(mode="json")}
    if path.is_file():
        theirs = load_bench(path)
        if theirs != cfg:
            raise ConfigError(f"{root} holds a benchmark made from another [bench] table ({path}); "
                              "continue it with the same one, or choose a new --out")
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(mine))


def _runnable(plans: list[StudyPlan]) -> tuple[list[StudyPlan], list[str]]:
    """GPU problems are skipped, with a line saying so, where there is no GPU."""
    import torch

    if torch.cuda.is_available():
        return plans, []
    gpu = sorted({p.problem.name for p in plans if p.problem.gpu})
    notes = [f"skipping {name}: it needs a CUDA GPU" for name in gpu]
    return [p for p in plans if not p.problem.gpu], notes


def _run_study(p: StudyPlan, root: Path, workers: int, storage: str | None, tag: str, out: TextIO) -> None:
    from trainwell.tune import load_handle, tune

    d = root / "studies" / p.path
    label = _label(p, tag)
    if d.is_dir() and (d / "study.toml").is_file() and _complete(load_handle(d, storage), p):
        print(f"{label}: done before", file=out, flush=True)
        return
    t0 = time.perf_counter()
    res = tune(p.study, study_dir=d, workers=workers, storage=storage, out=io.StringIO(),
               rerun_best=1 if p.rerun_seeds else 0, seeds=p.rerun_seeds)
    states = [t.state for t in res.trials]
    summary = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "infeasible", "failed", "pruned")
                        if states.count(s))
    best = res.best
    head = f"best {res.view.metric} {best.value:.4g}" if best is not None else "no complete trial"
    print(f"{label}: {summary}; {head} ({time.perf_counter() - t0:.1f} s)", file=out, flush=True)


def _label(p: StudyPlan, tag: str) -> str:
    return (f"{tag} {p.problem.name} / {p.algorithm}" + (f" / {p.schedule}" if p.path.name == p.schedule else "")
            + (f" / {p.path.name}" if "study" in p.path.name else ""))


def _test_final_runs(p: StudyPlan, root: Path, storage: str | None, protocol: str, tag: str, out: TextIO) -> None:
    """The test split of the study's final runs (the defaults' seeds, or the setting chosen
    on validation and its reruns), evaluated once the study is done, so that nothing in it
    was chosen by the test split. algoperf has none: its targets are validation targets."""
    if protocol == "algoperf":
        return
    import statistics

    from trainwell.bench.heldout import evaluate_test
    from trainwell.bench.results import final_numbers
    from trainwell.tune import load_handle
    from trainwell.tune.study import read_view

    d = root / "studies" / p.path
    if not (d / "study.toml").is_file():
        return
    view = read_view(load_handle(d, storage))
    final = final_numbers(view, protocol)
    records = [evaluate_test(t.run_dir, view.metric) for t in view.trials
               if t.number in final and t.state == "complete" and t.run_dir]
    name = "test/" + view.metric.split("/", 1)[-1]
    values = [r["metrics"][name] for r in records if r["metrics"].get(name) is not None]
    missing = [r["missing"] for r in records if r["missing"]]
    head = f"test {name.split('/', 1)[1]} {statistics.fmean(values):.4g}" if values else "no test value"
    print(f"{_label(p, tag)}: {head} (mean of {len(values)} of {len(records)} final runs)"
          + (f"; {len(missing)} without one, e.g. {missing[0]}" if missing else ""), file=out, flush=True)


def _complete(h: Any, p: StudyPlan) -> bool:
    """Every slot finished, and the seed reruns the protocol asks for made."""
    from trainwell.tune.study import counts, read_view

    c = counts(h)
    if c["waiting"] or c["running"]:
        return False
    return not p.rerun_seeds or len(read_view(h).reruns) >= p.rerun_seeds
