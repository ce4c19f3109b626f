"""GPT-2-small-class training throughput on one GPU: tokens/s and MFU.

The reference GPT of trainwell.models (pre-norm, QK-norm, rotary positions, no biases, tied
embeddings) at GPT-2 small's size: depth 12, width 768, 12 heads, context 1024, vocabulary
50304 (GPT-2's 50257 padded to a multiple of 128, as nanoGPT does, for faster matmuls);
about 124M parameters. Random tokens (throughput does not depend on the data), AdamW
(fused), bf16 autocast, scaled_dot_product_attention (flash on Hopper) and torch.compile.
The first ``--warmup`` steps (compilation, autotuning) are not timed.

    PYTHONPATH=src python benchmarks/gpu_gpt.py [--batch 16] [--steps 30] [--warmup 10]
    PYTHONPATH=src python benchmarks/gpu_gpt.py --tiny --device cpu --no-compile   # smoke test

MFU = 6N + 12 L C T FLOPs per token (GPT.flops_per_token, PaLM appendix B) x tokens/s /
the device's dense bf16 peak (trainwell.train.throughput.peak_flops: 989 TFLOP/s for an
H100 SXM). Without a GPU (and without --device cpu) it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from trainwell.models.gpt import GPT
from trainwell.train.throughput import flops_per_sample, peak_flops

GPT2_SMALL = {"depth": 12, "width": 768, "heads": 12, "seq_len": 1024, "vocab": 50304}
TINY = {"depth": 2, "width": 64, "heads": 2, "seq_len": 64, "vocab": 256}
"""--tiny: the same code path at a size a CPU runs in seconds (for tests)."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16,
                    help="sequences per step (16 x 1024 tokens fits an 80 GB H100 with room to spare)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation, autotuning)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (only useful with --tiny)")
    ap.add_argument("--no-compile", action="store_true", help="eager mode (for comparison)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model: a smoke test of this script")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = its default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_gpt: no CUDA GPU here; skipped (run it on a GPU machine, or --tiny --device cpu "
              "to check the script)")
        return 0
    device = torch.device(args.device)
    size = TINY if args.tiny else GPT2_SMALL
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls left
    model = GPT(size["vocab"], size["seq_len"], width=size["width"], depth=size["depth"],
                heads=size["heads"]).to(device)
    n_params = model.num_params()
    decay = [p for p in model.parameters() if p.ndim >= 2 and p is not model.wte.weight]
    no_decay = [p for p in model.parameters() if not (p.ndim >= 2 and p is not model.wte.weight)]
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), **fused)
    step_model = model if args.no_compile else torch.compile(model)
    dtype = torch.bfloat16 if device.type == "cuda" else None  # bf16 autocast on the GPU only
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> torch.Tensor:
        tokens = torch.randint(0, size["vocab"], (args.batch, size["seq_len"] + 1), device=device,
                               generator=gen)  # (B, T + 1)
        x, y = tokens[:, :-1], tokens[:, 1:]  # (B, T) each
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = step_model(x)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    tokens_per_s = args.batch * size["seq_len"] / dt
    per_token = flops_per_sample(model, "tokens", seq_len=1)
    peak = peak_flops(device, torch.bfloat16)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; {n_params / 1e6:.1f}M parameters; batch "
          f"{args.batch} x {size['seq_len']} tokens; {'eager' if args.no_compile else 'torch.compile'}")
    print(f"step time median {dt * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}) "
          f"over {args.steps} steps after {args.warmup} warm-up; last loss {loss.item():.3f}")
    line = f"tokens/s {tokens_per_s:,.0f}"
    if peak is not None and per_token is not None:
        line += (f"; model FLOPs {per_token * tokens_per_s / 1e12:.1f} TFLOP/s = MFU "
                 f"{per_token * tokens_per_s / peak:.1%} of {peak / 1e12:.0f} TFLOP/s (dense bf16 peak)")
    else:
        line += "; MFU unknown (no peak FLOP/s for this device in trainwell.train.throughput)"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
