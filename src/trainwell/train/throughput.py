"""Training FLOPs per sample and the accelerator's peak, for model FLOPs utilisation (MFU).

MFU = (training FLOPs per sample x samples per second) / peak FLOP/s (PaLM, Chowdhery et
al. 2022, appendix B). It counts the FLOPs the model needs, not those the hardware ran
(activation recomputation is not credited), so runs with different tricks stay comparable.

``flops_per_sample`` counts only matrix multiplications, the part that dominates training:

- a model with ``flops_per_token()`` (the reference GPT: 6N + 12 L C T, PaLM's formula)
  gives that times the tokens per sample;
- any other model: 6 x the weights of its Linear layers (2 FLOPs per multiply-add, x3 for
  forward, gradient wrt input, gradient wrt weight), plus 6 x the weights of each conv x
  its output positions (H_out x W_out), times the tokens per sample for token tasks.
  Biases, norms, activations, pooling and the softmax are left out (elementwise, a few
  percent at most), and so is the fact that the first layer needs no gradient wrt its input
  (this overstates a 2-layer MLP by up to a third; deep models by a few percent).

``peak_flops`` looks the device up in a table of dense (no structured sparsity) peaks from
the vendors' datasheets. It returns None for a CPU or an unknown GPU unless the caller
passes ``override`` (there is no honest default for a CPU's peak: it depends on the cores,
the vector units and the clock the machine happens to run at).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainwell.data.source import first_sample
from trainwell.train.state import unwrap

TFLOPS = 1e12

# (name fragment of torch.cuda.get_device_name, lowercased) -> dense peak TFLOP/s by math
# kind. Order matters: the first fragment found in the name wins, so variants come before
# the family name ("h100 pcie" before "h100"). Sources: NVIDIA datasheets; the datasheets
# quote bf16/fp16/tf32 "with sparsity" -- the dense figure is half of that.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    # B200 (HGX B200, per GPU): 2.25 PFLOP/s dense bf16/fp16, 1.1 tf32
    ("b200", {"bf16": 2250.0, "fp16": 2250.0, "tf32": 1100.0, "fp32": 75.0}),
    # H200 SXM datasheet: 1,979 bf16/fp16 with sparsity -> 989; same compute as H100 SXM
    ("h200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 67.0}),
    # H100 PCIe datasheet: 1,513 bf16 with sparsity -> 756; fp32 51
    ("h100 pcie", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.0}),
    # H100 NVL datasheet: 1,671 bf16 with sparsity -> 835; fp32 60
    ("h100 nvl", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    # H100 SXM5 datasheet ("NVIDIA H100 80GB HBM3"): 1,979 with sparsity -> 989; fp32 67
    ("h100", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 67.0}),
    # A100 datasheet (SXM and PCIe alike): 312 bf16/fp16 dense, 156 tf32, 19.5 fp32
    ("a100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    # L40S datasheet: 733 bf16 with sparsity -> 366; fp32 91.6
    ("l40s", {"bf16": 366.0, "fp16": 366.0, "tf32": 183.0, "fp32": 91.6}),
    # L4 datasheet: 242 bf16 with sparsity -> 121; fp32 30.3
    ("l4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    # RTX 4090 (Ada whitepaper): 165.2 bf16/fp16 dense with fp32 accumulate; fp32 82.6
    ("rtx 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    # V100 datasheet (SXM2): 125 fp16 tensor cores; no bf16; fp32 15.7
    ("v100", {"fp16": 125.0, "fp32": 15.7}),
    # T4 datasheet: 65 fp16 tensor cores; no bf16; fp32 8.1
    ("t4", {"fp16": 65.0, "fp32": 8.1}),
)


def flops_per_sample(
    model: nn.Module,
    task_unit: str,
    seq_len: int | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> float | None:
    """Training FLOPs (forward + backward) per sample, or None when they cannot be known.

    ``task_unit``: the task's unit ('samples' or 'tokens'); for 'tokens', and for any model
    with ``flops_per_token``, a sample is a sequence of ``seq_len`` tokens (the model's own
    ``seq_len`` attribute when not given).
    ``input_shape``: the per-sample input shape, e.g. (1, 8, 8); needed only for conv
    layers, whose cost depends on the output size (found by one forward pass of a single
    zero sample). None is returned for a conv model without it, for a token task without a
    sequence length, and for a model with no Linear or conv weights at all.
    """
    inner = unwrap(model)
    seq_len = seq_len if seq_len is not None else getattr(inner, "seq_len", None)
    per_token = getattr(inner, "flops_per_token", None)
    if callable(per_token):  # a sequence model: a sample is a sequence, whatever the unit
        return float(per_token()) * int(seq_len) if seq_len else None
    tokens = 1
    if task_unit == "tokens":
        if not seq_len:
            return None
        tokens = int(seq_len)

    linear = sum(m.weight.numel() for m in inner.modules() if isinstance(m, nn.Linear))
    convs = [m for m in inner.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not linear and not convs:
        return None
    conv = 0.0
    if convs:
        if input_shape is None:
            return None
        positions = _conv_output_positions(inner, convs, input_shape)
        conv = sum(m.weight.numel() * positions[m] for m in convs)
    return 6.0 * (linear + conv) * tokens


def _conv_output_positions(
    model: nn.Module, convs: list[nn.Module], input_shape: tuple[int, ...]
) -> dict[nn.Module, int]:
    """Output positions (H_out x W_out, or the product of the spatial sizes) of each conv
    for one sample, from a forward pass of one zero sample with hooks."""
    sizes: dict[nn.Module, int] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        sizes[module] = math.prod(output.shape[2:])  # (1, C_out, *spatial) -> prod(spatial)

    handles = [m.register_forward_hook(hook) for m in convs]
    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)  # (1, *input_shape)
    was_training = model.training
    try:
        model.eval()  # no BatchNorm statistics update, no dropout
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {m: sizes.get(m, 0) for m in convs}


def peak_flops_for_name(name: str, math_kind: str) -> float | None:
    """Dense peak FLOP/s of the GPU called ``name`` (torch.cuda.get_device_name) for
    ``math_kind`` ('bf16', 'fp16', 'tf32' or 'fp32'), or None if not in the table."""
    lowered = name.lower()
    for fragment, peaks in PEAK_TFLOPS:
        if fragment in lowered:
            value = peaks.get(math_kind)
            return value * TFLOPS if value is not None else None
    return None


def math_kind(dtype: torch.dtype | None) -> str:
    """'bf16', 'fp16', 'tf32' (fp32 matmuls on tensor cores, when torch allows them) or 'fp32'."""
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    # torch runs fp32 matmuls as TF32 when the precision is 'high' or 'medium'
    return "tf32" if torch.get_float32_matmul_precision() != "highest" else "fp32"


def peak_flops(
    device: torch.device | str, dtype: torch.dtype | None, *, override: float | None = None
) -> float | None:
    """Dense peak FLOP/s of ``device`` for matmuls in ``dtype`` (None = fp32), or None when
    unknown (a CPU, an unlisted GPU). ``override`` (FLOP/s, e.g. 989e12) wins when given:
    set it for a CPU or a GPU missing from ``PEAK_TFLOPS``."""
    if override is not None:
        if override <= 0:
            raise ValueError(f"peak FLOP/s override must be > 0, got {override}")
        return float(override)
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device), math_kind(dtype))


def mfu(flops_per_sample: float | None, samples_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None when the FLOPs or the peak are unknown)."""
    if flops_per_sample is None or peak is None or peak <= 0:
        return None
    return flops_per_sample * samples_per_s / peak


def for_run(model: nn.Module, task: object, device: torch.device, dtype: torch.dtype | None,
            peak_tflops: float = 0.0) -> tuple[float | None, float | None]:
    """(training FLOPs per sample, peak FLOP/s) of a run, for the loop's sys/mfu. The task's
    first training sample sizes conv layers; ``peak_tflops`` > 0 overrides the table (a
    CPU). Either is None when it cannot be known."""
    data = task.train_data()  # type: ignore[attr-defined]
    sample = first_sample(data)  # None for a stream or ready-made batches
    x = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) and x.is_floating_point() else None
    try:
        flops = flops_per_sample(model, task.unit, input_shape=shape)  # type: ignore[attr-defined]
    except Exception:  # a model whose one-sample forward fails: no MFU, never a failed run
        flops = None
    peak = peak_flops(device, dtype, override=peak_tflops * TFLOPS if peak_tflops > 0 else None)
    return flops, peak
