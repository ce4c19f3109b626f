"""One update, top to bottom: micro-batches -> autocast forward -> loss -> scaled backward
-> unscale -> clip -> ONE host sync -> StepRecord -> (the loop's verdict) -> apply or skip.

Only this module and loop.py change training state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainwell.data.loader import MicroBatch
from trainwell.instruments.runner import InstrumentRunner
from trainwell.tasks.base import Task
from trainwell.train.record import StepRecord
from trainwell.train.state import TrainState


class FinalActivationProbe:
    """RMS of the input to the model's last Linear layer (the LM head or classifier), kept
    on the device so that reading it costs no extra host sync. OPT-175B saw the final
    layer's activation norm spike before divergence (Zhang et al. 2022, section 2.5)."""

    def __init__(self, model: nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.value: Tensor | None = None
        self.armed = False
        self._handle = linears[-1].register_forward_hook(self._hook) if linears else None

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self.armed:
            x = inputs[0].detach()
            self.value = x.float().pow(2).mean().sqrt()
            self.armed = False  # first micro-batch only: cheap

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()


LABEL_KEYS = ("y", "targets", "labels")


def input_tensor(batch: object) -> Tensor | None:
    """The floating-point model input of a batch: a tensor, the first element of an
    (inputs, targets) pair, or the first non-label float tensor of a dict."""
    if isinstance(batch, Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and batch:
        x = batch[0]
    elif isinstance(batch, dict):
        x = next((v for k, v in batch.items() if k not in LABEL_KEYS and isinstance(v, Tensor)
                  and v.is_floating_point()), None)
    else:
        x = None
    return x if isinstance(x, Tensor) and x.is_floating_point() and x.ndim >= 1 else None


@dataclass
class StepOutput:
    """The tensors of a computed (not yet applied) update, for instruments and quarantine."""

    per_sample: list[tuple[Tensor, Tensor]]
    """(ids, per-sample loss) of each micro-batch, when the task provides them."""
    per_sample_input_rms: list[tuple[Tensor, Tensor]]
    """(ids, per-sample input RMS) of each micro-batch with floating-point inputs."""


def compute_update(
    st: TrainState,
    task: Task,
    micro: list[MicroBatch],
    *,
    max_norm: float,
    probe: FinalActivationProbe | None,
    data_time: float,
    t_start: float,
    force_overflow: bool = False,
    nan_loss: bool = False,
    runner: InstrumentRunner | None = None,
    measure_inputs: bool = True,
) -> tuple[StepRecord, StepOutput]:
    """Forward and backward over all micro-batches, unscale, clip; read every scalar the
    guards need in a single host sync and return them as a StepRecord. Nothing is applied."""
    model, opt, prec = st.model, st.optimizer, st.precision
    model.train()
    k = len(micro)
    if probe is not None:
        probe.armed = True

    loss_sum = torch.zeros((), dtype=torch.float32, device=st.device)
    count = torch.zeros((), dtype=torch.float32, device=st.device)
    comps: dict[str, Tensor] = {}
    per_sample: list[tuple[Tensor, Tensor]] = []
    input_rms: list[tuple[Tensor, Tensor]] = []
    norm_ref: Tensor | None = None
    n_samples = 0
    for idx, batch in micro:
        x = input_tensor(batch) if measure_inputs else None
        if x is not None:  # for the input guard: one reduction, read in the single sync below
            input_rms.append((idx, x.detach().float().flatten(1).pow(2).mean(1).sqrt()))
        with prec.autocast():
            out = task.loss(model, batch)
        if nan_loss:  # fault injection: a numerical blow-up in the forward pass
            out.sum = out.sum * float("nan")
        c = torch.as_tensor(out.count, device=st.device, dtype=torch.float32)
        if norm_ref is None:
            # Normalise by the total target count across micro-batches (not a mean of means,
            # the HF 2024 accumulation bug). The total is known only after the last forward,
            # so scale by a reference now and correct the gradient once at the end.
            norm_ref = c.detach() * k
        loss = out.sum.float() / norm_ref
        if prec.scaler is not None:
            prec.scaler.scale(loss).backward()
        else:
            loss.backward()
        if runner is not None and runner.due(st.step):  # the noise scale from micro-batches, free
            scale = prec.scale_tensor()
            runner.after_micro_backward(st.step, c, (scale if scale is not None else 1.0) / norm_ref)
        loss_sum += out.sum.detach().float()
        count += c.detach()
        for name, v in out.components.items():
            comps[name] = comps.get(name, 0) + v.detach().float()
        if out.per_sample is not None:
            per_sample.append((idx, out.per_sample.detach()))
        n_samples += int(idx.numel())

    params = st.params
    grads = [p.grad for p in params if p.grad is not None]
    if k > 1 and grads:
        torch._foreach_mul_(grads, norm_ref / count)  # now exactly sum / total count
    if force_overflow and grads:
        grads[0].fill_(float("inf"))  # fault injection: as if the scaled gradient overflowed
    if prec.scaler is not None:
        prec.scaler.unscale_(opt)  # records inf checks; the scaler skips and lowers its scale on overflow
    clip = max_norm * st.clip_mult
    if clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
    elif grads:
        grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    else:
        grad_norm = torch.zeros((), device=st.device)

    # --- the single host sync of the step: every scalar the guards and sinks need
    act = probe.value if probe is not None and probe.value is not None else torch.zeros(())
    scale = prec.scale_tensor()
    names = list(comps)
    packed = [loss_sum / count, grad_norm.float(), count, act.to(st.device).float()]
    packed.append(scale.float().reshape(()) if scale is not None else torch.ones((), device=st.device))
    packed.append(torch.cat([r for _, r in input_rms]).max() if input_rms else torch.zeros((), device=st.device))
    packed += [comps[n] / count for n in names]
    values = torch.stack([v.reshape(()).to(st.device) for v in packed]).tolist()
    loss_v, norm_v, count_v, act_v, scale_v, input_v = values[:6]

    lr = st.current_lr()
    overflow = prec.scaler is not None and not (norm_v == norm_v and abs(norm_v) != float("inf"))
    record = StepRecord(
        step=st.step,
        iteration=st.iteration + 1,
        loss=loss_v,
        grad_norm=norm_v,
        lr=lr,
        clip_norm=clip,
        loss_scale=scale_v,
        components=dict(zip(names, values[6:], strict=True)),
        n_samples=n_samples,
        n_targets=int(count_v),
        time_s=time.perf_counter() - t_start,
        data_time_s=data_time,
        final_act_norm=act_v,
        input_rms=input_v,
        applied=not overflow,
        reason="fp16_overflow" if overflow else "",
    )
    return record, StepOutput(per_sample=per_sample, per_sample_input_rms=input_rms)


def apply_update(st: TrainState) -> None:
    """Optimizer step with the scheduled LR, then EMA; advances the applied-step counter."""
    factor = st.lr_factor()
    for group in st.optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    if st.precision.scaler is not None:
        st.precision.scaler.step(st.optimizer)
        st.precision.scaler.update()
    else:
        st.optimizer.step()
    if st.ema is not None:
        st.ema.update_parameters(st.model)
    st.step += 1
    st.optimizer.zero_grad(set_to_none=True)


def skip_update(st: TrainState) -> None:
    """Drop the gradient. Nothing advances: not the schedule (it reads st.step), not the EMA,
    not the guards' windows (PL #18828, HF #11106 are this bug in peers)."""
    if st.precision.scaler is not None:
        # the scaler must close its inf-check cycle; on overflow this lowers the scale
        st.precision.scaler.update()
    st.optimizer.zero_grad(set_to_none=True)
