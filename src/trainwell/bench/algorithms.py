"""Training algorithms under test: every optimizer trainwell names, at its authors' defaults,
with a declared search space; and user submissions through an entry point.

A default is what the method's paper or its reference implementation ships, because the
one-shot protocol asks "how good is it untuned?" (Crowded Valley, Schmidt et al. 2021). The
Adam family's search space is AlgoPerf's NAdamW space (lr 1e-4..1e-2, 1 - beta1
4e-3..0.1, weight decay 5e-3..1, all log-uniform; Dahl et al. 2023, archived baselines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainwell.errors import ConfigError

ADAM_SPACE: dict[str, dict[str, Any]] = {
    "optim.lr": {"log": [1e-4, 1e-2]},
    "optim.betas[0]": {"one_minus_log": [4e-3, 0.1]},
    "optim.weight_decay": {"log": [5e-3, 1.0]},
}
SGD_SPACE: dict[str, dict[str, Any]] = {
    "optim.lr": {"log": [1e-3, 1.0]},
    "optim.momentum": {"uniform": [0.0, 0.99]},
    "optim.weight_decay": {"log": [1e-6, 1e-2]},
}


@dataclass(frozen=True)
class Algorithm:
    name: str
    config: dict[str, Any]
    """The ``[optim]`` (and, rarely, ``[schedule]``) values of its defaults."""
    space: dict[str, dict[str, Any]]
    """Its search space for the tuned protocols (tune's space entries)."""
    source: str = ""
    """Where the defaults come from."""
    lr_range: tuple[float, float] = (1e-5, 1e2)
    """DeepOBS's learning-rate grid (36 log points from 1e-5 to 1e2)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _adam_like(name: str, lr: float, betas: tuple[float, float], wd: float, source: str) -> Algorithm:
    return Algorithm(name, {"optim": {"name": name, "lr": lr, "betas": list(betas), "weight_decay": wd,
                                      "eps": 1e-8}}, ADAM_SPACE, source)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in [
    Algorithm("sgd", {"optim": {"name": "sgd", "lr": 0.01, "momentum": 0.0, "nesterov": False,
                                "weight_decay": 0.0}},
              {k: v for k, v in SGD_SPACE.items() if k != "optim.momentum"}, "plain SGD at lr 0.01"),
    Algorithm("momentum", {"optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True,
                                     "weight_decay": 0.0}},
              SGD_SPACE, "Nesterov momentum 0.9 (Sutskever et al. 2013) at lr 0.01"),
    _adam_like("adam", 1e-3, (0.9, 0.999), 0.0, "Kingma & Ba 2015"),
    _adam_like("adamw", 1e-3, (0.9, 0.999), 0.01, "Loshchilov & Hutter 2019; torch's weight decay 0.01"),
    _adam_like("nadam", 2e-3, (0.9, 0.999), 0.0, "Dozat 2016; torch's lr 2e-3"),
    _adam_like("radam", 1e-3, (0.9, 0.999), 0.0, "Liu et al. 2020"),
    Algorithm("rmsprop", {"optim": {"name": "rmsprop", "lr": 0.01, "momentum": 0.0, "eps": 1e-8,
                                    "weight_decay": 0.0}},
              {"optim.lr": {"log": [1e-5, 1e-1]}, "optim.weight_decay": {"log": [1e-6, 1e-2]}},
              "torch's RMSprop defaults (lr 0.01, alpha 0.99)"),
    Algorithm("lion", {"optim": {"name": "lion", "lr": 1e-4, "betas": [0.9, 0.99], "weight_decay": 0.0}},
              {"optim.lr": {"log": [1e-5, 1e-3]}, "optim.weight_decay": {"log": [1e-2, 3.0]}},
              "Chen et al. 2023 (lr 1e-4, betas 0.9/0.99)"),
    Algorithm("schedulefree_adamw", {"optim": {"name": "schedulefree_adamw", "lr": 2.5e-3,
                                               "betas": [0.9, 0.999], "weight_decay": 0.0}},
              ADAM_SPACE, "Defazio et al. 2024 (lr 0.0025)"),
]}

DEFAULT_ALGORITHMS = ("sgd", "momentum", "adam", "adamw", "nadam", "rmsprop")
"""The default comparison: the three DeepOBS baselines (SGD, momentum, Adam) and the Adam
family's and RMSprop's defaults that Crowded Valley found often on top."""


def resolve_algorithm(name: str) -> Algorithm:
    """A built-in algorithm, an optimizer name at trainwell's own optimizer defaults, or a
    user submission ``"pkg.module:make_submission"``."""
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    if ":" in name:
        return Algorithm(name, {"optim": {"name": name}}, {"optim.lr": {"log": [1e-5, 1e-1]}},
                         "a user submission (its own defaults)")
    from trainwell.optim import OPTIMIZERS

    if name in OPTIMIZERS:
        return Algorithm(name, {"optim": {"name": name}}, {"optim.lr": {"log": [1e-5, 1e-1]}},
                         "trainwell's optimizer defaults")
    valid = sorted(set(ALGORITHMS) | set(OPTIMIZERS))
    raise ConfigError(f"bench.algorithms: unknown algorithm {name!r}; valid: {', '.join(valid)}, "
                      "or a submission 'pkg.module:make_submission'")


def algorithm_problems(names: list[Any]) -> list[str]:
    problems = []
    for name in names:
        if not isinstance(name, str):
            problems.append(f"bench.algorithms: expected names, got {name!r}")
            continue
        try:
            resolve_algorithm(name)
        except ConfigError as e:
            problems.extend(e.problems)
    return problems


def merged(*parts: Mapping[str, Any]) -> dict[str, Any]:
    from trainwell.config import deep_merge

    out: dict[str, Any] = {}
    for p in parts:
        out = deep_merge(out, p)
    return out
