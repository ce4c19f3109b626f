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
from trainwell.data.source import loader_batch_size
from trainwell.diagnose import rules, rules_data, rules_outliers, rules_train
from trainwell.diagnose.findings import SEVERITIES, Finding, sort_findings, write_findings
from trainwell.diagnose.probes import (
    DepthProfile,
    InputStats,
    depth_profile,
    draw_batch,
    input_stats,
)
from trainwell.diagnose.probes_data import (
    HOLDOUT_SAMPLES,
    HoldoutResult,
    OutputStats,
    SplitCheck,
    draw_disjoint,
    holdout_probe,
    output_stats,
    split_check,
)
from trainwell.diagnose.probes_train import (
    OVERFIT_TARGET,
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

    def __str__(self) -> str:
        return render(self)


@dataclass
class Probes:
    """What every probe measured (None: not measured, or not applicable)."""

    inputs: InputStats | None = None
    profile: DepthProfile | None = None
    bn: BatchNormCheck | None = None
    overfit: OverfitResult | None = None
    run: RunStats | None = None
    output: OutputStats | None = None
    holdout: HoldoutResult | None = None
    split: SplitCheck | None = None
    num_classes: int | None = None


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
    cfg = loader_batch_size(cfg, data)  # a DataLoader's batch size is the run's
    p = Probes(num_classes=_num_classes(task))
    checked: list[str] = []
    failed: list[str] = []
    """Probes that could not run, each with why: the others still do (a diagnosis never ends
    in a traceback because one probe met a model it did not expect)."""

    p.inputs = _probe("the input scale", failed, lambda: input_stats(
        draw_batch(task, data, INPUT_SAMPLES, cfg.seed, device)))
    if p.inputs is not None:
        checked.append(f"input scale and centring ({p.inputs.samples} samples, {p.inputs.features} features)")
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(device)
    shared = model is task.build_model()  # a user's model object (trainwell.fit): restore it after
    snapshot = copy.deepcopy(model.state_dict()) if shared else None
    batch = _probe("a batch of training data", failed, lambda: draw_batch(
        task, data, min(cfg.train.batch_size, PROFILE_SAMPLES), cfg.seed + 1, device))
    if batch is not None:
        p.output = _probe("the outputs and targets at init", failed, output_stats, model, task, batch)
        p.profile = _probe("the depth profile at init", failed, depth_profile, model, task, batch)
        p.bn = _probe("the BatchNorm modes", failed, batchnorm_check, task, model, batch)
    _restore(model, snapshot)
    if p.profile is not None:
        checked.append(f"loss at init and the depth profile ({len(p.profile.activations)} activation layers, "
                       f"{len(p.profile.weighted)} weighted layers)")
    if p.output is not None:
        checked.append("outputs and targets at init")
    if p.bn is not None:
        checked.append(f"BatchNorm modes and running statistics ({len(p.bn.modules)} modules)")

    torch.manual_seed(cfg.seed)
    p.overfit = _probe("overfitting one batch", failed, lambda: overfit_one_batch(
        task, task.build_model().to(device), draw_batch(task, data, OVERFIT_SAMPLES, cfg.seed + 2, device)))
    _restore(model, snapshot)
    if p.overfit is not None:
        checked.append(f"overfitting one batch of {p.overfit.samples} samples ({p.overfit.steps} steps)")
    _data_probes(p, cfg, task, data, device, failed, checked, snapshot)

    if all(x is None or x.has_gradient for x in (p.profile, p.overfit)):
        p.run = _probe(f"a {steps}-step run", failed, short_run, cfg, task, out_dir, steps)
        _restore(model, snapshot)
    if p.run is not None:
        checked.append(
            f"a {steps}-step run at lr {cfg.optim.lr:g} with the instruments (loss, Alpha, update size, "
            "gradient noise scale, activations, clipping" + (", sharpness" if p.run.sharpness else "") + ")"
        )
    findings = apply_rules(p)
    write_findings(out_dir, findings)
    stats = {name: (asdict(v) if v is not None else None) for name, v in (
        ("inputs", p.inputs), ("profile", p.profile), ("batchnorm", p.bn), ("overfit", p.overfit), ("run", p.run),
        ("output", p.output), ("holdout", p.holdout), ("split", p.split))}
    write_json(out_dir / "diagnosis.json", {"checked": checked, "not_checked": failed, "stats": stats,
                                            "findings": [f.to_json() for f in findings]})
    return Diagnosis(out_dir, findings, checked, stats, time.perf_counter() - t0, failed)


def _data_probes(p: Probes, cfg: RunConfig, task: Task, data: Any, device: torch.device, failed: list[str],
                 checked: list[str], snapshot: dict[str, Any] | None) -> None:
    """The label probe (a fresh model on seen and unseen training samples) and the evaluation
    split against training (shared samples, input statistics)."""
    def labels() -> HoldoutResult:
        seen, unseen, n = draw_disjoint(task, data, HOLDOUT_SAMPLES, cfg.seed + 3, device)
        torch.manual_seed(cfg.seed)
        model = task.build_model().to(device)
        try:
            return holdout_probe(task, model, seen, unseen, n)
        finally:
            _restore(model, snapshot)

    if p.overfit is None or p.overfit.has_gradient:
        p.holdout = _probe("whether labels go with their inputs", failed, labels)
    if p.holdout is not None:
        checked.append(f"labels against inputs ({p.holdout.samples} samples trained on, as many unseen)")
    p.split = _probe("the evaluation split against training", failed, split_check, task, data,
                     task.eval_data(), device)
    if p.split is not None:
        checked.append(f"the evaluation split against training ({p.split.eval_samples} samples)")


def _probe(what: str, failed: list[str], fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or None with a line in ``failed`` saying what could not be checked and why."""
    try:
        return fn(*args)
    except Exception as e:  # a probe meeting a model or data it did not expect: the rest still runs
        failed.append(f"could not check {what}: {type(e).__name__}: {e}")
        return None


SYMPTOMS = ("loss_at_init", "lr_too_high", "lr_too_low", "cannot_overfit", "clipping_most_steps",
            "batch_above_noise", "batch_below_noise")
"""Findings about how training behaves. Listed after the findings about the model, data or
loss (the causes, whose fix is there) whatever their severity: x255 inputs make the loss
rise, and the first thing to read is the inputs, not the learning rate. Among themselves in
this order, nearest to a cause first: a loss at init far above log(C) (an output layer's
init) explains the clipping of the first steps; a learning rate, the units it killed."""


def apply_rules(p: Probes) -> list[Finding]:
    """Every rule on the probes' statistics. The findings: high and medium ones first, causes
    before the symptoms they explain (SYMPTOMS), each group worst first; then the low ones
    (notes: nothing to fix before training) in the same order."""
    run = p.run
    acts, weighted = (p.profile.activations, p.profile.weighted) if p.profile else ([], [])
    overfit_failed = p.overfit is not None and p.overfit.has_gradient and not (p.overfit.ratio <= OVERFIT_TARGET)
    low = _checked(rules_train.lr_too_low, run)
    dead = _checked(rules.dead_relus, acts, run.dead_frac if run else [])
    ignores = _checked(rules_data.output_ignores_input, p.output, acts[0].pre_std if acts else None)
    found = [
        ignores,
        _checked(rules_data.outputs_are_probabilities, p.output, overfit_failed),
        _checked(rules.cannot_overfit, p.overfit, dead_units=dead is not None),
        _checked(rules_data.labels_do_not_match, p.holdout),
        _checked(rules.batchnorm_mode, p.bn),
        _checked(rules_data.target_scale, p.output),
        _checked(rules.gradient_flow, weighted),
        _checked(rules.init_scale, acts, weighted),
        _checked(rules.saturation, acts, run.saturated_frac if run else []),
        dead,
        _checked(rules_data.inputs_not_scaled, p.inputs),
        _checked(rules_data.inputs_not_centred, p.inputs),
        _checked(rules_data.eval_shares_samples, p.split),
        _checked(rules_data.eval_inputs_differ, p.split),
        _checked(rules.loss_at_init, p.profile.loss, p.num_classes) if p.profile else None,
        _checked(rules_train.lr_too_high, run, can_learn=not overfit_failed),
        low,
        _checked(rules_train.clipping_most_steps, run.clipped if run else [], lr_low=low is not None,
                 grad_norms=run.grad_norms if run else [], clip_norm=run.clip_norm if run else 0.0),
    ]
    found = [f for f in found if f is not None]
    if not found and run is not None:
        # the noise scale of a run with another problem (diverging, saturated, not learning)
        # says nothing about the batch size: judge the batch only on an otherwise sound run
        found.append(_checked(rules_train.batch_vs_noise, run.batch_size, run.noise_scale))
    if run is not None:  # what quantisation will meet: worth knowing whatever else was found
        found.append(_checked(rules_outliers.outliers_growing, run.outliers_max_std))
    found = [f for f in found if f is not None]
    symptoms = set(SYMPTOMS)
    if dead is not None and (ignores is not None or dead.evidence.get("at init", 0.0) <= rules.DEAD_FRAC):
        symptoms.add(dead.id)  # units that died in training (a large LR), or never saw the input
    causes = [f for f in found if f.id not in symptoms]
    order = [*SYMPTOMS, "dead_relus"]  # the learning rate first: it explains the units it killed
    effects = sorted((f for f in found if f.id in symptoms), key=lambda f: (SEVERITIES.index(f.severity),
                                                                            order.index(f.id)))
    ranked = sort_findings(causes) + effects
    return [f for f in ranked if f.severity != "low"] + [f for f in ranked if f.severity == "low"]  # notes last


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
