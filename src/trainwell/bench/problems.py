"""Test problems: each fixes the model, the data, the batch size, the step budget and the
metric, so that only the training algorithm varies (DeepOBS, Schneider et al. 2019).

Every instance is fixed by its own seeds, identical between runs and machines: the data
splits and the quadratic's Hessian use fixed seeds of their own, never the run's seed (which
only sets the initialisation and the batch order).

Every problem has three disjoint splits. Training; validation (``eval/*``: what the
protocols select on, and what AlgoPerf's targets are set on); and test, never evaluated
while training and reported for the setting chosen on validation (deepobs, budget;
``bench/heldout.py``). The test split is ``task.test_fraction`` (``TEST_FRACTION`` of the
data, taken from the training side with its own fixed seed, so validation holds the same
samples as without it; for bytes, a band of the file hash), and for the quadratic a
separate draw of its noise, as in DeepOBS. The CPU suite mirrors DeepOBS's small set
on data that ships with Python and scikit-learn; the GPU suite is the same shape, larger.

An AlgoPerf target (``target``) is the validation value a run must reach and
``max_runtime_s`` its training-time budget, set the way AlgoPerf sets them (the best of
tuned baselines, the median over reruns; the budget 4/3 of their training time; Dahl et al.
2023) by ``benchmarks/bench_targets.py``, scaled down (8 trials per baseline, 5 reruns), and
recorded with the machine they were set on (``TARGETS_SET_ON``), on the problems as they
are (the test split held out). Times are the machine's: on another kind of machine, set them
again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from trainwell.registry import Registry

TARGETS_SET_ON = ("2-core Intel Xeon (KVM), torch 2.13.0 CPU, 1 thread per run with 2 workers, 2026-12-05, "
                  "with the 10% test split held out, benchmarks/bench_targets.py (AdamW, NAdamW, Nesterov "
                  "momentum; 8 trials each, 5 reruns)")

TEST_FRACTION = 0.1
"""Share of each problem's data held out as its test split (the quadratic draws its own)."""

_HARNESS: dict[str, Any] = {
    "task": {"test_fraction": TEST_FRACTION},
    # the algorithm under test supplies the optimizer and its schedule; clipping would change
    # what SGD does and EMA would change what is evaluated, so the harness turns both off
    "clip": {"max_norm": 0.0},
    "ema": {"decay": 0.0},
    "schedule": {"name": "constant", "warmup_steps": 0},
    "log": {"tensorboard": False, "sample_chars": 0, "every": 10},
    "instruments": {"preset": "off"},
}


@dataclass(frozen=True)
class Problem:
    name: str
    help: str
    config: dict[str, Any]
    """The run config that fixes the problem (task, model, train.steps, batch size, cadences)."""
    metric: str
    """The eval metric the problem is judged by (``eval/<name>``)."""
    higher_is_better: bool
    deepobs: str
    """The DeepOBS problem it is modelled on."""
    target: float | None = None
    """AlgoPerf: the validation target (None until set on this machine kind)."""
    max_runtime_s: float | None = None
    """AlgoPerf: the time budget; a run slower than this has missed the target."""
    target_set_on: str = ""
    gpu: bool = False
    notes: list[str] = field(default_factory=list)

    def run_config(self) -> dict[str, Any]:
        """The problem's config over the harness's (the problem wins where both speak)."""
        from trainwell.config import deep_merge

        return deep_merge(copy.deepcopy(_HARNESS), self.config)


PROBLEMS: Registry[Problem] = Registry("benchmark problem", "bench.problems")


def _add(p: Problem) -> None:
    PROBLEMS.add(p.name, p, p.help)


_add(Problem(
    "quadratic_deep", "100-d noisy quadratic with a deep-net spectrum (DeepOBS P1), batch 128, 800 steps",
    {"task": {"name": "quadratic"}, "train": {"steps": 800, "batch_size": 128, "eval_every": 100}},
    "eval/loss", False, "quadratic_deep",
    target=84.48, max_runtime_s=0.5, target_set_on=TARGETS_SET_ON,  # momentum: 84.35-84.51 over 5 seeds
))
_add(Problem(
    "digits_vae", "VAE on scikit-learn's 8x8 digits (DeepOBS P2-like), batch 64, 400 steps, nelbo",
    {"task": {"name": "digits-vae"}, "train": {"steps": 400, "batch_size": 64, "eval_every": 100}},
    "eval/nelbo", False, "mnist_vae",
    target=24.40, max_runtime_s=1.1, target_set_on=TARGETS_SET_ON,  # adamw: 24.34-24.69
))
_add(Problem(
    "digits_2c2d", "2 conv + 2 dense layers on the digits (DeepOBS P3-like), batch 128, 400 steps",
    {"task": {"name": "digits"}, "model": {"kind": "cnn", "depth": 2, "width": 32},
     "train": {"steps": 400, "batch_size": 128, "eval_every": 100}},
    "eval/accuracy", True, "fmnist_2c2d",
    target=0.9889, max_runtime_s=4.4, target_set_on=TARGETS_SET_ON,  # adamw: 0.9833-0.9944
))
_add(Problem(
    "bytes_char", "2-block byte-level transformer on Python's source (DeepOBS P8-like), batch 32 x 64, 200 steps",
    {"task": {"name": "bytes-lm", "seq_len": 64}, "model": {"depth": 2, "width": 64, "heads": 4},
     "train": {"steps": 200, "batch_size": 32, "eval_every": 50, "eval_batches": 8}},
    "eval/bpb", False, "tolstoi_char_rnn",
    target=3.577, max_runtime_s=9.5, target_set_on=TARGETS_SET_ON,  # nadam: 3.375-3.827
))
_add(Problem(
    "digits_deep_tanh", "8 tanh layers, no normalisation, no residuals, on the digits: optimizers disagree here",
    {"task": {"name": "digits"},
     "model": {"kind": "mlp", "depth": 8, "width": 64, "norm": "none", "residual": False, "activation": "tanh"},
     "train": {"steps": 400, "batch_size": 64, "eval_every": 100}},
    "eval/accuracy", True, "(none: a plain deep net, where adaptive methods and SGD part ways)",
    target=0.9389, max_runtime_s=0.6, target_set_on=TARGETS_SET_ON,  # momentum: 0.925-0.9472
))
_add(Problem(
    "bytes_gpt_gpu", "the default 4-block byte-level GPT, batch 64 x 256, 2000 steps (GPU)",
    {"task": {"name": "bytes-lm", "seq_len": 256}, "model": {"depth": 4, "width": 256, "heads": 4},
     "train": {"steps": 2000, "batch_size": 64, "eval_every": 250, "device": "cuda"}},
    "eval/bpb", False, "tolstoi_char_rnn", gpu=True,
))
_add(Problem(
    "digits_resnet_gpu", "a BatchNorm ResNet on the digits, batch 256, 2000 steps (GPU)",
    {"task": {"name": "digits"}, "model": {"kind": "resnet", "depth": 4, "width": 64, "norm": "batch"},
     "train": {"steps": 2000, "batch_size": 256, "eval_every": 250, "device": "cuda"}},
    "eval/accuracy", True, "svhn_wrn164", gpu=True,
))

CPU_SUITE = ("quadratic_deep", "digits_vae", "digits_2c2d", "bytes_char", "digits_deep_tanh")
GPU_SUITE = ("bytes_gpt_gpu", "digits_resnet_gpu")
