"""The built-in tasks' defaults train well, checked with a minimal playbook loop (AdamW with
betas (0.9, 0.95), weight decay on >= 2-D weights only, warmup + cosine, clipping at 1.0,
gradient of sum-loss / count): independent of the real trainer, so a regression in a task's
defaults or data shows up here on its own."""

from __future__ import annotations

import math
import time

import pytest
import torch

from trainwell.config import RunConfig, resolve
from trainwell.tasks import Task, build_task


def minimal_fit(task: Task, cfg: RunConfig) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
    )
    steps, warmup = cfg.train.steps, cfg.schedule.warmup_steps
    floor = cfg.schedule.min_lr_ratio

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    data = task.train_data()
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data), generator=gen)
    pos = 0
    model.train()
    for _ in range(steps):
        if pos + cfg.train.batch_size > len(order):
            order, pos = torch.randperm(len(data), generator=gen), 0
        idx = order[pos : pos + cfg.train.batch_size]
        pos += cfg.train.batch_size
        out = task.loss(model, data.get_batch(idx))
        (out.sum / out.count).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip.max_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    return evaluate(task, model)


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, batch_size: int = 256) -> dict[str, float]:
    model.eval()
    data = task.eval_data()
    sums: dict[str, list[float]] = {}
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        for name, (s, c) in task.metrics(model, data.get_batch(idx)).items():
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += float(s)
            acc[1] += float(c)
    return {name: s / c for name, (s, c) in sums.items()}


@pytest.mark.slow
def test_digits_defaults_reach_95_percent_test_accuracy():
    cfg = resolve({"task": {"name": "digits"}})
    start = time.perf_counter()
    result = minimal_fit(build_task(cfg), cfg)
    elapsed = time.perf_counter() - start
    print(f"digits: {result} in {elapsed:.1f}s")
    assert result["accuracy"] >= 0.95


@pytest.mark.slow
def test_digits_cnn_reaches_95_percent_test_accuracy():
    cfg = resolve({"task": {"name": "digits"}, "model": {"kind": "cnn", "width": 32}})
    result = minimal_fit(build_task(cfg), cfg)
    assert result["accuracy"] >= 0.95


@pytest.mark.slow
def test_digits_vae_defaults_cut_the_nelbo_by_40_percent():
    # the default model and learning rate on a shortened schedule (the full 1000 steps
    # gain only ~0.6 nats more and take minutes on a busy 2-core machine)
    cfg = resolve({"task": {"name": "digits-vae"}, "train": {"steps": 400}})
    task = build_task(cfg)
    torch.manual_seed(0)
    start = evaluate(task, task.build_model())["nelbo"]  # ~44.6 nats per image at init
    result = minimal_fit(task, cfg)
    assert result["nelbo"] < 0.6 * start  # ~25 nats after 400 steps


@pytest.mark.slow
def test_quadratic_defaults_get_close_to_the_noise_floor():
    cfg = resolve({"task": {"name": "quadratic"}})
    task = build_task(cfg)
    floor = evaluate(task, _at_optimum(task))["loss"]
    start = evaluate(task, task.build_model())["loss"]
    result = minimal_fit(task, cfg)
    # the excess loss over the best possible (theta = 0) shrinks by more than 100x
    assert result["loss"] - floor < 0.01 * (start - floor)


def _at_optimum(task: Task) -> torch.nn.Module:
    model = task.build_model()
    with torch.no_grad():
        model.theta.zero_()
    return model
