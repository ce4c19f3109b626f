"""One update, top to bottom: micro-batches -> autocast forward -> loss -> scaled backward
-> gradient normalised by the total target count -> unscale -> clip -> ONE host read ->
StepRecord. The loop decides; ``apply_update`` or ``skip_update`` carries it out.

Only this module, loop.py and interventions.py change training state. One process and
several run the same code: a single process is a world of one (train/reads.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from trainwell.data.loader import MicroBatch
from trainwell.instruments.runner import InstrumentRunner
from trainwell.tasks.base import Task, input_tensor, sample_norms
from trainwell.train.probe import FinalActivationProbe
from trainwell.train.reads import ONE_PROCESS, HostReads, Reads
from trainwell.train.record import StepRecord
from trainwell.train.state import TrainState, unwrap


@dataclass
class StepOutput:
    """The tensors of a computed (not yet applied) update, for instruments and quarantine."""

    per_sample: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    """(ids, per-sample loss) of each micro-batch, when the task provides them."""
    input_norms: list[tuple[Tensor, Tensor, int]] = field(default_factory=list)
    """(ids, per-sample L2 norm of the input, input size D) of each micro-batch with
    floating-point inputs; RMS = norm / sqrt(D)."""
    lr_factor: float = 1.0
    """The schedule factor of this update (record.lr / peak lr): apply_update uses it as is."""
    runner_due: bool = False
    """Whether the instruments runner wants this update (asked once a step)."""
    micro: list[MicroBatch] = field(default_factory=list)
    """The update's micro-batches: a refused update's samples are scored again from them
    when the task reported no per-sample losses (``Task.sample_losses``)."""

    def per_sample_input_rms(self) -> tuple[Tensor, Tensor] | None:
        """(ids, per-sample input RMS on the host) over all micro-batches, or None."""
        if not self.input_norms:
            return None
        ids = torch.cat([i for i, _, _ in self.input_norms])
        rms = torch.cat([n.cpu() / math.sqrt(d) for _, n, d in self.input_norms])
        return ids, rms


def compute_update(
    st: TrainState,
    task: Task,
    micro: list[MicroBatch],
    *,
    max_norm: float,
    probe: FinalActivationProbe | None,
    data_time: float,
    t_start: float,
    runner: InstrumentRunner | None = None,
    measure_inputs: bool = True,
) -> tuple[StepRecord, StepOutput]:
    """Forward and backward over all micro-batches, normalise, unscale, clip; read every
    scalar the guards need in a single host sync and return them as a StepRecord. Nothing
    is applied."""
    comm = st.dist or ONE_PROCESS
    st.model.train()  # evaluation is the only place that switches it off
    runner_due = runner is not None and runner.due(st.step)
    # one process: per-sample gradients from this backward (instruments/capture.py)
    capture = runner if runner_due and st.dist is None else None
    if capture is not None:
        capture.begin(st.step, compiled=st.model is not unwrap(st.model), micro=len(micro))
    if probe is not None:
        probe.arm()  # the last Linear layer's input, first micro-batch
    reads = HostReads(comm)
    out, divisor = _forward_backward(st, task, micro, comm, reads, capture, measure_inputs)
    out.runner_due, out.micro = runner_due, micro
    act = probe.take() if probe is not None else None
    if probe is not None:
        probe.disarm()
    if act is not None:
        reads.share("act_norm", [torch.linalg.vector_norm(act, dtype=torch.float32)])

    reads.gather(st.device)  # across ranks: one all_gather; no host sync
    # the gradient now holds sum / divisor: make it sum / (total target count of the step);
    # with one micro-batch on one process the divisor was that total already
    grads = [p.grad for p in st.params if p.grad is not None]
    if grads and (len(micro) > 1 or comm.world > 1):
        torch._foreach_mul_(grads, comm.grad_correction(divisor, reads.columns("count").sum()))
    if st.precision.scaler is not None:
        st.precision.scaler.unscale_(st.optimizer)  # records inf checks; the scaler skips an overflow
    clip = max_norm * st.clip_mult
    reads.add("grad_norm", _clip(st.params, clip, st.device))
    if (scale := st.precision.scale_tensor()) is not None:
        reads.add("loss_scale", scale)

    got = reads.read()  # --- the single host sync of the step
    return _record(st, got, clip, probe, out, data_time, t_start), out


def _forward_backward(st: TrainState, task: Task, micro: list[MicroBatch], comm: Any, reads: HostReads,
                      runner: InstrumentRunner | None, measure_inputs: bool) -> tuple[StepOutput, Tensor | float]:
    """Each micro-batch's forward and scaled backward; its loss sum, target count and
    components go to ``reads``. Returns the per-sample tensors and the divisor used."""
    k, prec = len(micro), st.precision
    out = StepOutput()
    sums: list[Tensor] = []
    counts: list[Tensor | float] = []
    comps: dict[str, list[Tensor]] = {}
    divisor: Tensor | float | None = None
    for i, (idx, batch) in enumerate(micro):
        x = input_tensor(batch) if measure_inputs else None
        if x is not None:  # for the input guard
            out.input_norms.append((idx, *sample_norms(x)))
        with comm.grad_sync(st.model, last=i == k - 1):  # gradients reduce across ranks on the last only
            with prec.autocast():
                loss = task.loss(st.model, batch)
            count = loss.count.detach().float() if isinstance(loss.count, Tensor) else float(loss.count)
            if divisor is None:
                # Normalise by the total target count across micro-batches (not a mean of means,
                # the HF 2024 accumulation bug). The total is known only after the last forward,
                # so divide by a reference now and correct the gradient once at the end.
                divisor = comm.loss_divisor(count, k)
            scaled = loss.sum.float() / divisor
            (prec.scaler.scale(scaled) if prec.scaler is not None else scaled).backward()
        if runner is not None:  # the noise scale from micro-batches and the per-sample factors
            scale = prec.scale_tensor()
            runner.after_micro_backward(st.step, torch.as_tensor(count, device=st.device),
                                        (scale if scale is not None else 1.0) / divisor,
                                        int(idx.numel()), loss.per_sample)
        sums.append(loss.sum.detach())
        counts.append(count)
        for name, v in loss.components.items():
            comps.setdefault(name, []).append(v.detach())
        if loss.per_sample is not None:
            out.per_sample.append((idx, loss.per_sample.detach()))
    reads.share("loss", sums)
    reads.share("count", counts)
    reads.share("samples", [float(idx.numel()) for idx, _ in micro])
    reads.share("input_max", [n.max() for _, n, _ in out.input_norms])
    for name, values in comps.items():
        reads.share(f"component/{name}", values)
    return out, divisor


def _clip(params: list[Tensor], max_norm: float, device: torch.device) -> Tensor:
    """Clip the gradients to a total L2 norm of ``max_norm`` (none when <= 0); returns
    their total norm before clipping (a plain tensor, also under FSDP2)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    full = getattr(norm, "full_tensor", None)  # FSDP2: a DTensor holding the global norm
    return full() if full is not None else norm


def _record(st: TrainState, got: Reads, clip: float, probe: FinalActivationProbe | None, out: StepOutput,
            data_time: float, t_start: float) -> StepRecord:
    """The StepRecord from the host values: sums over micro-batches and ranks, on the host."""
    total = got.total("count")
    grad_norm = got.local["grad_norm"]
    overflow = st.precision.scaler is not None and not math.isfinite(grad_norm)
    factor = st.lr_factor()  # once a step: apply_update takes it from the StepOutput
    out.lr_factor = factor
    return StepRecord(
        step=st.step,
        iteration=st.iteration + 1,
        loss=got.total("loss") / total,
        grad_norm=grad_norm,
        lr=st.peak_lr * factor,
        clip_norm=clip,
        loss_scale=got.local.get("loss_scale", 1.0),
        components={key.split("/", 1)[1]: got.total(key) / total for key in got.per_rank if key.startswith("component/")},
        n_samples=int(got.total("samples")),
        n_targets=int(total),
        time_s=time.perf_counter() - t_start,
        data_time_s=data_time,
        final_act_norm=_act_rms(got, probe),
        input_rms=_input_rms(got, out),
        applied=not overflow,
        reason="fp16_overflow" if overflow else "",
    )


def _act_rms(got: Reads, probe: FinalActivationProbe | None) -> float:
    """The RMS of the last layer's input over every rank's first micro-batch (0: not measured)."""
    if probe is None or "act_norm" not in got.per_rank:
        return 0.0
    norms = [row[0] for row in got.per_rank["act_norm"]]
    return probe.rms(math.sqrt(sum(n * n for n in norms) / len(norms)) if len(norms) > 1 else norms[0])


def _input_rms(got: Reads, out: StepOutput) -> float:
    """The largest per-sample input RMS of the update, over every rank; NaN when any is NaN."""
    sizes = [d for _, _, d in out.input_norms]
    rms = [row[i] / math.sqrt(d) for row in got.per_rank["input_max"] for i, d in enumerate(sizes)]
    return math.nan if any(math.isnan(r) for r in rms) else max(rms, default=0.0)


def apply_update(st: TrainState, lr_factor: float) -> None:
    """Optimizer step with the scheduled LR (the factor the step took), then EMA; advances
    the applied-step counter."""
    for group in st.optimizer.param_groups:
        group["lr"] = group["initial_lr"] * lr_factor
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
