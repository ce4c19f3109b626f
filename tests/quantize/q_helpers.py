"""Small models and trained runs for the quantisation tests."""

from __future__ import annotations

from pathlib import Path

import torch

from trainwell.models.gpt import GPT

VOCAB, SEQ = 64, 16


def tiny_gpt(seed: int = 0) -> GPT:
    """A tied-embedding GPT whose linear layers all take multiples of 32 inputs (int4 groups)."""
    torch.manual_seed(seed)
    model = GPT(VOCAB, SEQ, width=32, depth=1, heads=2).eval()
    with torch.no_grad():  # the residual projections start at zero: give them weights to quantise
        for p in model.parameters():
            if p.dim() == 2 and p.abs().max() == 0:
                p.normal_(0.0, 0.02)
    return model


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(seed))  # (B, T)


def train_digits(run_dir: Path, seed: int, ema: float = 0.9) -> Path:
    """A short digits run (a few seconds) with a checkpoint at its end, EMA weights and the
    outlier instrument on."""
    from trainwell.config import load_config
    from trainwell.train.loop import run

    cfg = load_config(overrides=[
        "task.name=digits", f"seed={seed}", "train.steps=30", "train.eval_every=30",
        "schedule.warmup_steps=5", "log.progress=off", "log.tensorboard=false",
        "instruments.include=['outliers']", "instruments.every=10", f"ema.decay={ema}",
    ])
    run(cfg, run_dir=run_dir)
    return run_dir
