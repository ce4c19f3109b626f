"""Metric rows the loop writes: train metrics of a logged step, samples/targets per second,
model FLOPs utilisation and peak memory, and the final metrics of a run (read back from
metrics.jsonl after a resume)."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trainwell.train.record import StepRecord


class Rate:
    """Samples and targets per second since the last logged step; with the model's
    training FLOPs per sample (and the device's peak), the achieved model TFLOP/s and MFU."""

    def __init__(self, flops_per_sample: float | None = None, peak_flops: float | None = None,
                 device: torch.device | None = None) -> None:
        self.since, self.samples, self.targets = time.perf_counter(), 0, 0
        self.flops_per_sample = flops_per_sample
        self.peak_flops = peak_flops
        self.device = device

    def add(self, samples: int, targets: int) -> None:
        self.samples += samples
        self.targets += targets

    def per_second(self, unit: str) -> float:
        dt = time.perf_counter() - self.since
        return (self.targets if unit == "tokens" else self.samples) / dt if dt > 0 else 0.0

    def take(self) -> tuple[float, float]:
        now = time.perf_counter()
        dt = now - self.since
        out = (self.samples / dt, self.targets / dt) if dt > 0 else (0.0, 0.0)
        self.since, self.samples, self.targets = now, 0, 0
        return out


def train_metrics(record: StepRecord, unit: str, rate: Rate) -> dict[str, float]:
    samples_per_s, targets_per_s = rate.take()
    m: dict[str, float] = {
        "train/loss": record.loss,
        "train/grad_norm": record.grad_norm,
        "train/clipped": float(record.clipped),
        "train/lr": record.lr,
        "train/clip_norm": record.clip_norm,
        "train/final_act_norm": record.final_act_norm,
        "sys/step_time_s": record.time_s,
        "sys/data_time_frac": record.data_time_s / record.time_s if record.time_s > 0 else 0.0,
        "sys/samples_per_s": samples_per_s,
    }
    if unit == "tokens":
        m["sys/tokens_per_s"] = targets_per_s
    if rate.flops_per_sample:
        achieved = rate.flops_per_sample * samples_per_s
        m["sys/model_tflops"] = achieved / 1e12
        if rate.peak_flops:
            m["sys/mfu"] = achieved / rate.peak_flops
    m["sys/peak_mem_gb"] = peak_memory_gb(rate.device)
    if record.loss_scale != 1.0:
        m["train/loss_scale"] = record.loss_scale
    for name, v in record.components.items():
        m[f"train/loss/{name}"] = v
    return m


def peak_memory_gb(device: torch.device | None) -> float:
    """Peak memory so far: allocated by torch on a CUDA device, else the process's peak
    resident set (the CPU's whole footprint, libraries included). Both are cheap reads."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def logged_eval(path: Path, step: int) -> dict[str, float]:
    from trainwell.sinks import read_jsonl

    rows = [r for r in read_jsonl(path) if r.get("step") == step]
    return {k: v for r in rows for k, v in r.items() if k.startswith(("eval/", "eval_ema/"))}


def final_metrics(last_eval: dict[str, float], history: list[dict[str, Any]]) -> dict[str, float]:
    final = dict(last_eval)
    train_rows = [h for h in history if "train/loss" in h]
    if train_rows:
        final["train/loss"] = train_rows[-1]["train/loss"]
    return final
