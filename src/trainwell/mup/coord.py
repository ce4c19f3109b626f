"""The coordinate check (Yang et al. 2022, section 5 and the ``mup`` README): train a few steps
at widths from the base to many times wider, under SP and under muP, and see whether each
module's activations keep their size as the width grows.

The size of a module's output is its mean absolute entry (the ``mup`` package's ``l1``),
recorded on the forward of each step (step 1 is at initialisation) and averaged over seeds.
Its growth is the size at the widest width over the size at the base width, per step. Under
muP no module may grow: every ratio must stay at most ``GROW`` (2x). Under SP hidden layers
and the output grow with the width. A module that ends below ``SHRINK`` is noted, not failed:
muP's output starts small at a large width (its init is constant while its multiplier is 1/m,
so it starts as 1/sqrt(m)) and catches up as the updates, whose effect does not depend on
the width, take over (0.13, 0.42, 0.64, 0.75 over 4 steps at 32x on the digits MLP).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from trainwell.config import RunConfig
from trainwell.errors import ConfigError

GROW = 2.0
"""A module whose activations grow more than 2x over the widths fails (mup's README: growth
is the symptom; the reference's own muP MLP measured 0.66-1.0 over 32x width)."""
SHRINK = 0.5
"""A module that ends the check below half its base-width size is noted (not failed)."""


@dataclass
class CoordData:
    """l1[parametrization][module][step][width index] (mean over seeds), and the verdicts."""

    widths: list[int]
    steps: int
    seeds: int
    l1: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    seconds: float = 0.0

    def growth(self, param: str, module: str) -> list[float]:
        """Per step: l1 at the widest width / l1 at the base width (nan where the base is 0)."""
        return [row[-1] / row[0] if row[0] > 0 else math.nan for row in self.l1[param][module]]

    def problems(self, param: str) -> list[str]:
        """One line per module whose activations grow with the width (the check fails)."""
        span = self.widths[-1] / self.widths[0]
        return [f"{m or 'the model'} grows {max(g):.1f}x over {span:g}x width"
                for m, g in self._finite(param) if max(g) > GROW]

    def notes(self, param: str) -> list[str]:
        """One line per module still smaller at the widest width at the last step."""
        return [f"{m or 'the model'} ends at {g[-1]:.2f}x of its base-width size (still catching up: "
                "more --steps or a larger lr shows whether it does)"
                for m, g in self._finite(param) if max(g) <= GROW and g[-1] < SHRINK]

    def _finite(self, param: str) -> list[tuple[str, list[float]]]:
        out = []
        for module in self.l1[param]:
            g = [x for x in self.growth(param, module) if math.isfinite(x)]
            if g:
                out.append((module, g))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"widths": self.widths, "steps": self.steps, "seeds": self.seeds, "seconds": self.seconds,
                "l1": self.l1, "problems": {p: self.problems(p) for p in self.l1},
                "notes": {p: self.notes(p) for p in self.l1}}


def default_widths(base: int, times: int = 32) -> list[int]:
    """base, 2 base, ... up to ``times`` x base."""
    out, w = [], base
    while w <= base * times:
        out.append(w)
        w *= 2
    return out


def check_widths(widths: Sequence[int]) -> list[str]:
    problems = []
    if len(widths) < 2:
        problems.append(f"--widths needs at least two widths, got {list(widths)}")
    if any(w < 1 for w in widths):
        problems.append(f"--widths must be positive, got {list(widths)}")
    if list(widths) != sorted(set(widths)):
        problems.append(f"--widths must be increasing, without repeats, got {list(widths)}")
    return problems


def coord_check(
    cfg: RunConfig,
    widths: Sequence[int],
    *,
    steps: int = 4,
    seeds: int = 2,
    params: Sequence[str] = ("sp", "mup"),
    progress: Callable[[str], None] | None = None,
) -> CoordData:
    """Train ``steps`` steps of ``cfg``'s task at each width (muP relative to ``widths[0]``)
    with the config's optimizer at its peak lr (no schedule), ``seeds`` times, and record
    every module's activation size. The batches are the same at every width and under both
    parametrizations."""
    from trainwell.tasks import build_task

    problems = check_widths(widths)
    if steps < 1 or seeds < 1:
        problems.append(f"--steps and --seeds must be >= 1, got {steps} and {seeds}")
    if problems:
        raise ConfigError(problems)
    t0 = time.perf_counter()
    data = CoordData(list(widths), steps, seeds)
    for param in params:
        sizes: dict[str, list[list[list[float]]]] = {}  # module -> step -> width -> per seed
        for wi, width in enumerate(widths):
            run_cfg = _at(cfg, width, widths[0], param)
            task = build_task(run_cfg)
            batches = _batches(task, run_cfg, steps)
            for seed in range(seeds):
                for module, per_step in _train(run_cfg, task, batches, seed).items():
                    rows = sizes.setdefault(module, [[[] for _ in widths] for _ in range(steps)])
                    for t, v in enumerate(per_step):
                        rows[t][wi].append(v)
            if progress is not None:
                progress(f"{param} width {width}: {time.perf_counter() - t0:.1f} s")
        data.l1[param] = {m: [[sum(v) / len(v) if v else math.nan for v in row] for row in rows]
                          for m, rows in sizes.items()}
    data.seconds = time.perf_counter() - t0
    return data


def _at(cfg: RunConfig, width: int, base: int, param: str) -> RunConfig:
    raw = cfg.to_dict()
    raw["model"] = {**raw["model"], "width": width, "parametrization": param, "mup_base_width": base}
    return RunConfig.model_validate(raw)


def _batches(task: Any, cfg: RunConfig, steps: int) -> list[Any]:
    from trainwell.data.source import build_loader

    loader = build_loader(task.train_data(), task.collate, torch.device("cpu"),
                          batch_size=cfg.train.batch_size, accumulate=1, seed=cfg.seed)
    return [loader.next()[0][1] for _ in range(steps)]


def _train(cfg: RunConfig, task: Any, batches: list[Any], seed: int) -> dict[str, list[float]]:
    """module name -> its output's mean |x| on the forward of each step."""
    from trainwell.optim import build_optimizer

    torch.manual_seed(cfg.seed + seed)
    model = task.build_model()
    opt = build_optimizer(cfg.optim, model, steps=len(batches))
    record: dict[str, list[float]] = {}
    handles = [m.register_forward_hook(_recorder(record, name))
               for name, m in model.named_modules() if _watched(m)]
    try:
        for batch in batches:
            out = task.loss(model, batch)
            (out.sum / out.count).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    finally:
        for h in handles:
            h.remove()
    return record


def _watched(m: nn.Module) -> bool:
    """Every module that holds parameters of its own (the readout's output is the logits)."""
    return any(True for _ in m.parameters(recurse=False))


def _recorder(record: dict[str, list[float]], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, Tensor) and output.is_floating_point():
            record.setdefault(name, []).append(output.detach().abs().mean().item())
    return hook
