"""A study on Optuna's storage: its directory, its slots, and the trials read back as records.

Every trial of a study is a *slot* enqueued when the study is made (``slot`` user
attribute, 0 .. trials-1). For quasirandom, random and grid the slot carries its point of
the study's own sequence, so workers on any number of machines take points from one list
and none is drawn twice (Optuna's QMCSampler numbers its draws from a count of trials that
concurrent workers race on: 6 duplicates in 80 measured with two workers). A trial whose
process died is *reclaimed*: marked failed and superseded, and its slot enqueued again with
the same parameters and run directory, so that it resumes from its checkpoints.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from trainwell.errors import ConfigError
from trainwell.tune.config import Study, load_study
from trainwell.tune.records import StudyView, TrialRecord
from trainwell.tune.space import config_value, planned_trials, points

HEARTBEAT_S = 20.0
"""A running trial's worker writes a heartbeat this often."""
STALE_AFTER_S = 120.0
"""A running trial with no heartbeat for this long belongs to a dead process (another machine's)."""
STUDY_FILE = "study.toml"
STORAGE_FILE = "storage.json"
JOURNAL_FILE = "journal.log"


@dataclass
class Handle:
    """An open study: its directory, its checked config, Optuna's study object."""

    study_dir: Path
    study: Study
    optuna: optuna.Study
    storage_url: str | None
    metric: str
    higher_is_better: bool

    @property
    def name(self) -> str:
        return self.study.tune.name


def default_dir(name: str) -> Path:
    return Path("studies") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def storage_for(study_dir: Path, url: str | None) -> optuna.storages.BaseStorage:
    """``url`` (an RDB URL: postgresql://..., many machines) or the journal file in the study
    directory: needs no server, and appends under a file lock, where SQLite's writers lock
    each other out under parallel workers (optuna #820, #4994)."""
    if url:
        return _rdb(url)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(study_dir / JOURNAL_FILE)))


def _rdb(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage. Two processes that open an empty database at the same moment
    both create its tables and one fails on a duplicate key (seen in 6 of 8 tries with
    PostgreSQL): the loser tries again and finds the tables made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
        except Exception as e:  # a bad URL, a missing driver, a server that does not answer
            raise ConfigError(f"--storage {_redact(url)}: cannot open the storage: {e}") from None
    raise AssertionError("unreachable")


def open_study(study: Study, study_dir: Path, storage_url: str | None) -> Handle:
    """Make the study in ``study_dir`` (or in ``storage_url``) with its slots, or continue
    it. A study directory made from another config is refused (its trials would not be
    comparable): everything but tune.trials must match."""
    study_dir.mkdir(parents=True, exist_ok=True)
    _check_same_study(study, study_dir)
    url = storage_url or _stored_url(study_dir)
    metric, higher = _objective_metric(study)
    direction = "maximize" if higher else "minimize"
    study_obj = optuna.create_study(storage=storage_for(study_dir, url), study_name=study.tune.name,
                                    direction=direction, load_if_exists=True, sampler=_sampler(study),
                                    pruner=_pruner(study))
    if study_obj.direction.name.lower() != direction:
        raise ConfigError(f"the study {study.tune.name!r} in the storage is a {study_obj.direction.name.lower()} "
                          f"study, but {metric} is to be {direction}d: use another tune.name")
    (study_dir / STUDY_FILE).write_text(_toml(study.to_dict()))
    if url:
        (study_dir / STORAGE_FILE).write_text(json.dumps({"url": url, "study_name": study.tune.name}))
    study_obj.set_user_attr("metric", metric)
    study_obj.set_user_attr("higher_is_better", higher)
    handle = Handle(study_dir, study, study_obj, url, metric, higher)
    ensure_slots(handle)
    return handle


def load_handle(study_dir: str | Path, storage_url: str | None = None) -> Handle:
    """Attach to a study made by ``open_study`` (a worker, ``tune show``, ``tune report``)."""
    d = Path(study_dir)
    if not (d / STUDY_FILE).is_file():
        raise ConfigError(f"{d}: not a study directory (no {STUDY_FILE}); make one with trainwell tune STUDY.toml")
    study = load_study(d / STUDY_FILE)
    url = storage_url or _stored_url(d)
    if url is None and not (d / JOURNAL_FILE).is_file():
        raise ConfigError(f"{d}: the study has no storage yet ({JOURNAL_FILE} is missing)")
    try:
        study_obj = optuna.load_study(study_name=study.tune.name, storage=storage_for(d, url), sampler=_sampler(study),
                                       pruner=_pruner(study))
    except KeyError:
        raise ConfigError(f"{d}: the storage holds no study named {study.tune.name!r}") from None
    attrs = study_obj.user_attrs
    if "metric" in attrs:
        metric, higher = attrs["metric"], bool(attrs["higher_is_better"])
    else:
        metric, higher = _objective_metric(study)
    return Handle(d, study, study_obj, url, metric, higher)


def ensure_slots(h: Handle) -> int:
    """Enqueue the slots the study lacks (all of them when it is new; more when tune.trials
    grew). Returns how many were added."""
    planned = max(planned_trials(h.study), int(h.optuna.user_attrs.get("planned", 0)))
    have = {t.user_attrs.get("slot") for t in h.optuna.get_trials(deepcopy=False)}
    missing = [i for i in range(planned) if i not in have]
    if not missing:
        return 0
    pts = points(h.study.dims, h.study.tune, min(missing), planned) if h.study.tune.budget != "oneshot" else None
    for i in missing:
        params = pts[i - min(missing)] if pts is not None else {}
        h.optuna.enqueue_trial(params, user_attrs={"slot": i, "seed": h.study.run.seed})
    h.optuna.set_user_attr("planned", planned)
    return len(missing)


def enqueue_reruns(h: Handle, k: int, seeds: int) -> int:
    """Enqueue ``seeds`` reruns, each with another seed, of the ``k`` best trials."""
    view = read_view(h)
    added = 0
    have = {t.user_attrs.get("slot") for t in h.optuna.get_trials(deepcopy=False)}
    for best in view.ranked()[:k]:
        original = _trial_by_slot(h, best.number)
        if original is None:
            continue
        for j in range(1, seeds + 1):
            slot = f"{best.number}-seed{j}"
            if slot in have:
                continue
            h.optuna.enqueue_trial(dict(original.params), user_attrs={
                "slot": slot, "seed": h.study.run.seed + j, "rerun_of": best.number})
            added += 1
    return added


# ---------------------------------------------------------------- reclaiming dead trials


def reclaim_stale(h: Handle, *, now: float | None = None) -> list[int]:
    """Trials left running by a dead process: mark them failed (superseded) and enqueue
    their slot again with the same parameters and run directory. A process on this host is
    dead when its pid is gone; elsewhere, when its heartbeat is older than STALE_AFTER_S."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    reclaimed = []
    for t in h.optuna.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        same_host = attrs.get("host") == host
        dead = (same_host and not _alive(attrs.get("pid"))) or now - attrs.get("heartbeat", now) > STALE_AFTER_S
        if not dead or "slot" not in attrs:
            continue
        try:
            h.optuna._storage.set_trial_user_attr(t._trial_id, "superseded", True)
            h.optuna._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except Exception:  # another process reclaimed it first
            continue
        keep = {k: attrs[k] for k in ("slot", "seed", "rerun_of") if k in attrs}
        if same_host and attrs.get("run_dir"):
            keep["resume_dir"] = attrs["run_dir"]
        h.optuna.enqueue_trial(dict(t.params), user_attrs={**keep, "attempt": attrs.get("attempt", 1) + 1})
        reclaimed.append(t.number)
    return reclaimed


def _alive(pid: Any) -> bool:
    from trainwell.checkpoint.fsio import pid_alive

    return isinstance(pid, int) and pid_alive(pid)


# ---------------------------------------------------------------- reading back


def effective_trials(h: Handle) -> list[FrozenTrial]:
    """One trial per slot: the newest attempt, superseded and spare trials left out."""
    by_slot: dict[Any, FrozenTrial] = {}
    for t in h.optuna.get_trials(deepcopy=False):
        slot = t.user_attrs.get("slot")
        if slot is None or t.user_attrs.get("superseded") or t.user_attrs.get("spare"):
            continue
        if t.state == TrialState.WAITING and slot in by_slot:
            continue
        by_slot[slot] = t
    return list(by_slot.values())


def state_of(t: FrozenTrial) -> str | None:
    """The record's state; None for a slot not started yet."""
    if t.state == TrialState.COMPLETE:
        return "complete"
    if t.state == TrialState.PRUNED:
        return "pruned"
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.FAIL:
        return "infeasible" if t.user_attrs.get("outcome") == "infeasible" else "failed"
    return None


def record_of(h: Handle, t: FrozenTrial, number: int) -> TrialRecord | None:
    """The trial as the analysis sees it (``number``: its place in the study); None for a
    slot not started yet."""
    state = state_of(t)
    if state is None:
        return None
    dims = {d.key: d for d in h.study.dims}
    params = {k: config_value(dims[k], v) if k in dims else v for k, v in t.params.items()}
    return TrialRecord(
        number=number,
        state=state,  # type: ignore[arg-type]
        params=params,
        value=t.value if state == "complete" else t.user_attrs.get("last_value"),
        run_dir=t.user_attrs.get("run_dir"),
        interventions=dict(t.user_attrs.get("interventions", {})),
        reason=t.user_attrs.get("reason"),
        best_step=t.user_attrs.get("best_step"),
        steps=t.user_attrs.get("steps", h.study.run.train.steps),
        seed=int(t.user_attrs.get("seed", h.study.run.seed)),
        rerun_of=t.user_attrs.get("rerun_of"),
        duration_s=t.user_attrs.get("duration_s"),
    )


def read_view(h: Handle) -> StudyView:
    trials = effective_trials(h)
    planned = int(h.optuna.user_attrs.get("planned", planned_trials(h.study)))
    # a search slot is its own number; seed reruns ('3-seed1') are numbered after them, in slot order
    reruns = sorted((t.user_attrs["slot"] for t in trials if isinstance(t.user_attrs["slot"], str)), key=_slot_key)
    numbers = {slot: planned + i for i, slot in enumerate(reruns)}
    records = [r for t in trials if (r := record_of(h, t, numbers.get(t.user_attrs["slot"], t.user_attrs["slot"])))]
    records.sort(key=lambda r: (r.rerun_of is not None, r.number))
    return StudyView(
        name=h.name, study_dir=h.study_dir, metric=h.metric, higher_is_better=h.higher_is_better,
        objective=h.study.tune.objective, dims=list(h.study.searched), scientific=list(h.study.tune.scientific),
        trials=records, planned=planned, sampler=h.study.tune.sampler,
    )


def counts(h: Handle) -> dict[str, int]:
    """Slots by state, for the live view: waiting, running, complete, infeasible, failed, pruned."""
    out = dict.fromkeys(("waiting", "running", "complete", "infeasible", "failed", "pruned"), 0)
    for t in effective_trials(h):
        out[state_of(t) or "waiting"] += 1
    return out


# ---------------------------------------------------------------- helpers


def _slot_key(slot: str) -> tuple[int, int]:
    number, _, seed = slot.partition("-seed")
    return int(number), int(seed)


def _trial_by_slot(h: Handle, slot: int) -> FrozenTrial | None:
    for t in effective_trials(h):
        if t.user_attrs.get("slot") == slot:
            return t
    return None


def _objective_metric(study: Study) -> tuple[str, bool]:
    """The run metric the objective is read from, and its direction (from the task)."""
    from trainwell.tasks import build_task

    task = build_task(study.run)
    return f"eval/{task.metric}", bool(task.higher_is_better)


def _sampler(study: Study) -> optuna.samplers.BaseSampler:
    """The sampler of adaptive studies (tpe, gp) for the points they choose themselves;
    the others enqueue their points, and this only serves Optuna's bookkeeping."""
    seed = study.tune.seed + os.getpid()  # workers must not share a random stream
    if study.tune.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, study.tune.planned // 3)))
    if study.tune.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(10, max(2, study.tune.planned // 3)))
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(study: Study) -> optuna.pruners.BasePruner:
    """median: stop a trial whose evaluation is worse than the median of the trials before
    it at the same step, once a fifth of the study (at least 3 trials) has finished, and
    never at the first evaluation; halving: Optuna's asynchronous successive halving."""
    if study.tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(3, study.tune.planned // 5),
                                           n_warmup_steps=study.run.train.eval_every + 1)
    if study.tune.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _check_same_study(study: Study, study_dir: Path) -> None:
    path = study_dir / STUDY_FILE
    if not path.is_file():
        return
    stored = load_study(path)
    diffs = _differences(_comparable(stored), _comparable(study))
    if diffs:
        raise ConfigError([f"{study_dir} holds a study made from another config ({d}); continue it "
                           "with the same file, or choose a new --study-dir" for d in diffs])


def _comparable(study: Study) -> dict[str, Any]:
    d = study.to_dict()
    d["tune"] = {k: v for k, v in d["tune"].items() if k not in ("trials", "budget")}
    return d


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out.extend(_differences(a.get(k), b.get(k), f"{prefix}{k}."))
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"]


def _stored_url(study_dir: Path) -> str | None:
    path = study_dir / STORAGE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("url")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<storage url>"


def _toml(d: dict[str, Any]) -> str:
    import tomli_w

    from trainwell.config import _drop_none

    return tomli_w.dumps(_drop_none(d))

