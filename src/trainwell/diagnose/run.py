"""``diagnose``: run the probes, apply the rules, write ``findings.json``.

Order: input statistics and the depth profile at init (one forward and backward), the
BatchNorm mode check, overfit one batch, then a short run of the configured training with the
instruments on. The run directory gets the short run's files (metrics.jsonl, config.toml...),
``findings.json`` and ``diagnosis.json`` (every statistic the rules read), so that
``trainwell report RUN_DIR`` shows the curves and the findings together.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainwell.config import RunConfig
from trainwell.diagnose import rules
from trainwell.diagnose.findings import Finding, sort_findings, write_findings
from trainwell.diagnose.probes import (
    DepthProfile,
    InputStats,
    depth_profile,
    draw_batch,
    input_stats,
)
from trainwell.diagnose.probes_train import (
    BatchNormCheck,
    OverfitResult,
    RunStats,
    batchnorm_check,
    overfit_one_batch,
    short_run,
)
from trainwell.tasks import Task, build_task
from trainwell.train.rundir import make_run_dir, write_json

PROFILE_SAMPLES = 64
"""Samples of the depth profile's batch: enough that a unit active on any sample is seen
(a dead-ReLU call on fewer would be noisy), small enough for one quick forward."""

INPUT_SAMPLES = 512
"""Samples for the input statistics (per-feature means and spreads)."""

OVERFIT_SAMPLES = 8
"""'Overfit one batch' on a handful of samples (Karpathy: as few as two); 8 is memorised by
every built-in task in under 80 Adam steps (digits: 8, bytes-lm: 73, measured)."""

DEFAULT_STEPS = 50
"""Steps of the short run: five instrument measurements, and under a second on digits
(about 25 s for bytes-lm) on 2 CPU cores."""


@dataclass
class Diagnosis:
    run_dir: Path
    findings: list[Finding]
    checked: list[str]
    """What was examined, in words (shown when nothing was found)."""
    stats: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    not_checked: list[str] = field(default_factory=list)
    """Probes that could not run, each with why."""


def diagnose(
    cfg: RunConfig,
    *,
    task: Task | None = None,
    run_dir: str | Path | None = None,
    steps: int = DEFAULT_STEPS,
) -> Diagnosis:
    """Probe the run ``cfg`` describes and return its findings (also written to
    ``<run_dir>/findings.json``). The task's model is left as it was."""
    from trainwell.train.flight import resolve_device
    from trainwell.train.rng import seed_everything

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.train.device)
    task = task if task is not None else build_task(cfg)
    out_dir = make_run_dir(run_dir, f"{cfg.task.name}-diagnose")
    data = task.train_data()
    checked: list[str] = []
    failed: list[str] = []
    """Probes that could not run, each with why: the others still do (a diagnosis never ends
    in a traceback because one probe met a model it did not expect)."""

    inputs = _probe("the input scale", failed, lambda: input_stats(
        draw_batch(task, data, INPUT_SAMPLES, cfg.seed, device)))
    if inputs is not None:
        checked.append(f"input scale and centring ({inputs.samples} samples, {inputs.features} features)")
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(device)
    shared = model is task.build_model()  # a user's model object (trainwell.fit): restore it after
    snapshot = copy.deepcopy(model.state_dict()) if shared else None
    batch = _probe("a batch of training data", failed, lambda: draw_batch(
        task, data, min(cfg.train.batch_size, PROFILE_SAMPLES), cfg.seed + 1, device))
    profile = bn = None
    if batch is not None:
        profile = _probe("the depth profile at init", failed, depth_profile, model, task, batch)
        bn = _probe("the BatchNorm modes", failed, batchnorm_check, task, model, batch)
    _restore(model, snapshot)
    if profile is not None:
        checked.append(f"loss at init and the depth profile ({len(profile.activations)} activation layers, "
                       f"{len(profile.weighted)} weighted layers)")
    if bn is not None:
        checked.append(f"BatchNorm modes ({len(bn.modules)} modules)")

    torch.manual_seed(cfg.seed)
    overfit = _probe("overfitting one batch", failed, lambda: overfit_one_batch(
        task, task.build_model().to(device), draw_batch(task, data, OVERFIT_SAMPLES, cfg.seed + 2, device)))
    _restore(model, snapshot)
    if overfit is not None:
        checked.append(f"overfitting one batch of {overfit.samples} samples ({overfit.steps} steps)")

    run: RunStats | None = None
    if all(p is None or p.has_gradient for p in (profile, overfit)):
        run = _probe(f"a {steps}-step run", failed, short_run, cfg, task, out_dir, steps)
        _restore(model, snapshot)
    if run is not None:
        checked.append(
            f"a {steps}-step run at lr {cfg.optim.lr:g} with the instruments (loss, Alpha, update size, "
            "gradient noise scale, activations, clipping" + (", sharpness" if run.sharpness else "") + ")"
        )
    findings = apply_rules(inputs, profile, bn, overfit, run, _num_classes(task))
    write_findings(out_dir, findings)
    stats = {
        "inputs": asdict(inputs) if inputs else None,
        "profile": asdict(profile) if profile else None,
        "batchnorm": asdict(bn) if bn else None,
        "overfit": asdict(overfit) if overfit else None,
        "run": asdict(run) if run else None,
    }
    write_json(out_dir / "diagnosis.json", {"checked": checked, "not_checked": failed, "stats": stats,
                                            "findings": [f.to_json() for f in findings]})
    return Diagnosis(out_dir, findings, checked, stats, time.perf_counter() - t0, failed)


def _probe(what: str, failed: list[str], fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or None with a line in ``failed`` saying what could not be checked and why."""
    try:
        return fn(*args)
    except Exception as e:  # a probe meeting a model or data it did not expect: the rest still runs
        failed.append(f"could not check {what}: {type(e).__name__}: {e}")
        return None


def apply_rules(
    inputs: InputStats | None,
    profile: DepthProfile | None,
    bn: BatchNormCheck | None,
    overfit: OverfitResult | None,
    run: RunStats | None,
    num_classes: int | None,
) -> list[Finding]:
    """Every rule on the probes' statistics; the findings, worst first."""
    dead_later = run.dead_frac if run else []
    sat_later = run.saturated_frac if run else []
    acts, weighted = (profile.activations, profile.weighted) if profile else ([], [])
    low = _checked(rules.lr_too_low, run)
    found = [
        _checked(rules.cannot_overfit, overfit),
        _checked(rules.batchnorm_mode, bn),
        _checked(rules.gradient_flow, weighted),
        _checked(rules.init_scale, acts, weighted),
        _checked(rules.saturation, acts, sat_later),
        _checked(rules.dead_relus, acts, dead_later),
        _checked(rules.inputs_not_scaled, inputs),
        _checked(rules.inputs_not_centred, inputs),
        _checked(rules.loss_at_init, profile.loss, num_classes) if profile else None,
        _checked(rules.lr_too_high, run),
        low,
        _checked(rules.clipping_most_steps, run.clipped if run else [], lr_low=low is not None,
                 grad_norms=run.grad_norms if run else [], clip_norm=run.clip_norm if run else 0.0),
    ]
    found = [f for f in found if f is not None]
    if not found and run is not None:
        # the noise scale of a run with another problem (diverging, saturated, not learning)
        # says nothing about the batch size: judge the batch only on an otherwise sound run
        found.append(_checked(rules.batch_vs_noise, run.batch_size, run.noise_scale))
    return sort_findings([f for f in found if f is not None])


def _checked(rule: Any, *args: Any, **kwargs: Any) -> Finding | None:
    """A rule that fails on odd statistics is a finding of its own, low, saying what could
    not be checked and why, so that one rule cannot take the diagnosis down with it."""
    try:
        return rule(*args, **kwargs)
    except Exception as e:  # a rule's bug or an unforeseen statistic: the others still run
        return Finding(f"could_not_check_{rule.__name__}", f"Could not check {rule.__name__.replace('_', ' ')}: "
                       f"{type(e).__name__}: {e}", "low", {}, "Nothing to fix in the run; the check itself failed "
                       "(worth a bug report with diagnosis.json).", "trainwell")


def render(d: Diagnosis) -> str:
    """The diagnosis in plain words, for the console."""
    lines = []
    if not d.findings:
        lines.append("no problems found. Checked:")
        lines += [f"  - {c}" for c in d.checked]
    else:
        lines.append(f"{len(d.findings)} finding{'s' if len(d.findings) > 1 else ''}:")
        for f in d.findings:
            lines.append("")
            lines.append(f.describe())
    if d.not_checked:
        lines.append("")
        lines += [f"{line}" for line in d.not_checked]
    lines.append("")
    lines.append(f"wrote {d.run_dir / 'findings.json'} in {d.wall_time_s:.1f}s "
                 f"(trainwell report {d.run_dir} shows it with the short run's curves)")
    return "\n".join(lines)


def _num_classes(task: Task) -> int | None:
    """Classes of a cross-entropy task (log C is the loss of a uniform guess), when it says."""
    for name in ("num_classes", "vocab_size"):
        value = getattr(task, name, None)
        if isinstance(value, int):
            return value
    return None


def _restore(model: torch.nn.Module, snapshot: dict[str, Any] | None) -> None:
    if snapshot is not None:
        model.load_state_dict(snapshot)
