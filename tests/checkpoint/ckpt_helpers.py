"""Helpers shared by the checkpoint tests: a tiny nested state, deep equality, a store.

(A plain module with a unique name rather than conftest.py: test folders have no
__init__.py, so two conftest modules would collide on import.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainwell.checkpoint import CheckpointConfig, CheckpointStore


def make_parts(step: int) -> dict[str, Any]:
    """A small state shaped like the loop's: every kind of value a part may hold."""
    g = torch.Generator().manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return {
        "model": model.state_dict(),
        "optimizer": {
            "state": {0: {"exp_avg": torch.randn(3, 4, generator=g), "step": torch.tensor(float(step))}},
            "param_groups": [{"lr": 1e-3 * (step + 1), "betas": (0.9, 0.95), "params": [0, 1]}],
        },
        "train": {
            "step": step,
            "tokens": 12345678901234 + step,
            "loss_window": [0.5, 0.25, float("inf")],
            "name": "run-β",
            "none": None,
            "flag": True,
            "rng": torch.Generator().manual_seed(step).get_state(),  # ByteTensor
            "python_rng": (3, tuple(range(5)), None),
            "dtypes": {
                "f16": torch.arange(4, dtype=torch.float16),
                "bf16": torch.arange(4, dtype=torch.bfloat16),
                "i64": torch.arange(4, dtype=torch.int64) + step,
                "bool": torch.tensor([True, False]),
                "u8": torch.arange(4, dtype=torch.uint8),
            },
            "nested": {"a": [{"b": [1, 2.5, "c", None]}], 7: "int key"},
        },
    }


def assert_same(a: Any, b: Any, at: str = "") -> None:
    """Deep equality with exact tensor comparison (dtype, shape, values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), at
        assert a.dtype == b.dtype and a.shape == b.shape, at
        assert torch.equal(a, b), at
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), at
        for k in a:
            assert_same(a[k], b[k], f"{at}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), at
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{at}[{i}]")
    else:
        assert a == b and type(a) is type(b), f"{at}: {a!r} != {b!r}"


def new_store(tmp_path: Path, **cfg: Any) -> CheckpointStore:
    return CheckpointStore(tmp_path / "checkpoints", CheckpointConfig(**cfg))
