"""One update, top to bottom: micro-batches -> autocast forward -> loss -> scaled backward
-> unscale -> clip -> ONE host sync -> StepRecord -> (the loop's verdict) -> apply or skip.

Only this module and loop.py change training state.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from trainwell.data.loader import InputNorms, MicroBatch
from trainwell.instruments.runner import InstrumentRunner
from trainwell.tasks.base import Task
from trainwell.train.probe import FinalActivationProbe, clip_and_norms, grads_of, l2
from trainwell.train.record import StepRecord
from trainwell.train.state import TrainState, unwrap

_NO_SYNC = nullcontext()
"""One process: no gradient-sync context around a micro-batch (a nullcontext is stateless)."""


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


HOST_NORMS_MAX = 4096
"""Up to this many samples a step, the per-sample input norms travel in the step's one read
and the host takes their max (no device op); above it, one device max per micro-batch."""


def sample_norms(idx: Tensor, x: Tensor) -> tuple[Tensor, Tensor, int]:
    """(ids, per-sample L2 norm of the input (b,) in float32, input size D) of a (b, ...)
    floating-point input: a single op for a float32 (b, D) input (the common case)."""
    if x.requires_grad:
        x = x.detach()
    if x.ndim != 2:  # (b,) -> (b, 1); (b, C, H, W) -> (b, C*H*W)
        x = x.reshape(x.shape[0], -1)
    if x.dtype is torch.float32:
        return idx, torch.linalg.vector_norm(x, dim=1), x.shape[1]
    return idx, torch.linalg.vector_norm(x, dim=1, dtype=torch.float32), x.shape[1]


def largest_rms(values: list[float], start: int, input_norms: list[tuple[Tensor, Tensor, int]],
                per_sample: bool) -> float:
    """The largest per-sample input RMS (norm / sqrt(D)) from the host copy of each
    micro-batch's norms, which begin at ``values[start]`` (all of a micro-batch's samples
    when ``per_sample``, else its max alone); NaN when any norm is NaN, 0 without inputs."""
    best = 0.0
    for _, n, d in input_norms:
        size = n.shape[0] if per_sample else 1
        seg = values[start:start + size]
        start += size
        total = sum(seg)
        if total != total:  # a NaN anywhere (max() would pass over one after the first)
            return math.nan
        top = max(seg) / math.sqrt(d)
        if top > best:
            best = top
    return best


@dataclass
class StepOutput:
    """The tensors of a computed (not yet applied) update, for instruments and quarantine."""

    per_sample: list[tuple[Tensor, Tensor]]
    """(ids, per-sample loss) of each micro-batch, when the task provides them."""
    input_norms: list[tuple[Tensor, Tensor, int]]
    """(ids, per-sample L2 norm of the input, input size D) of each micro-batch with
    floating-point inputs (one entry for the whole batch when the micro-batches were cut
    from it); RMS = norm / sqrt(D), computed only when it is needed."""
    lr_factor: float = 1.0
    """The schedule factor of this update (record.lr / peak lr): apply_update uses it as is."""
    runner_due: bool = False
    """Whether the instruments runner wants this update (asked once a step)."""
    input_table: tuple[Tensor, InputNorms] | None = None
    """(ids, the dataset's input norms) when the step looked them up instead of measuring."""

    def per_sample_input_rms(self) -> tuple[Tensor, Tensor] | None:
        """(ids, per-sample input RMS on the host) over all micro-batches, or None."""
        if self.input_table is not None:
            ids, table = self.input_table
            return ids, table.of(ids) / math.sqrt(table.size)
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
    force_overflow: bool = False,
    nan_loss: bool = False,
    runner: InstrumentRunner | None = None,
    measure_inputs: bool = True,
) -> tuple[StepRecord, StepOutput]:
    """Forward and backward over all micro-batches, unscale, clip; read every scalar the
    guards need in a single host sync and return them as a StepRecord. Nothing is applied.

    Cheap on the host by design (a fixed cost paid every step, which small models feel):
    nothing is accumulated on the device; each micro-batch's loss sum, the grad norm and
    the optional probe values go into ONE stack read by one ``tolist()``, and the sums,
    divisions and square roots happen on the host."""
    model, opt, prec, dist = st.model, st.optimizer, st.precision, st.dist  # dist: None = one process
    if not model.training:  # evaluation is the only place that switches it off
        model.train()
    k = len(micro)
    if probe is not None:
        probe.arm()
    runner_due = runner is not None and runner.due(st.step)
    due = runner_due and dist is None
    if due:  # per-sample gradients from this backward (instruments/capture.py), not a second pass
        runner.begin(st.step, compiled=model is not unwrap(model), micro=k)  # one process: only compile wraps

    sums: list[Tensor] = []  # per micro-batch: loss sum (device scalars, read in the sync)
    counts: list[Tensor | float] = []  # per micro-batch: target count (host numbers when the task gives them)
    comps: dict[str, list[Tensor]] = {}
    per_sample: list[tuple[Tensor, Tensor]] = []
    input_norms: list[tuple[Tensor, Tensor, int]] = []
    norm_ref: Tensor | float | None = None
    n_samples = 0
    known = getattr(micro, "input_norms", None) if measure_inputs and dist is None else None
    if known is not None:  # the dataset's own per-sample norms, looked up on the host: no op
        measure_inputs = False
    whole = getattr(micro, "whole", None) if measure_inputs else None
    if whole is not None:  # the micro-batches are views of one batch: one op measures them all
        x = input_tensor(whole[1])
        if x is not None:
            input_norms.append(sample_norms(whole[0], x))
    for i, (idx, batch) in enumerate(micro):
        x = input_tensor(batch) if measure_inputs and whole is None else None
        if x is not None:  # for the input guard: one op per micro-batch, read in the single sync below
            input_norms.append(sample_norms(idx, x))
        with _NO_SYNC if dist is None else dist.grad_sync(model, last=i == k - 1):  # no sync until the last
            with prec.autocast():
                out = task.loss(model, batch)
            if nan_loss:  # fault injection: a numerical blow-up in the forward pass
                out.sum = out.sum * float("nan")
            c = out.count.detach().float() if isinstance(out.count, Tensor) else float(out.count)
            if norm_ref is None:
                # Normalise by the total target count across micro-batches (not a mean of means,
                # the HF 2024 accumulation bug). The total is known only after the last forward,
                # so scale by a reference now and correct the gradient once at the end. Across
                # ranks the reference must be the same everywhere (dist/context.py).
                norm_ref = c * k if dist is None else dist.loss_divisor(c, k)
            s = out.sum
            loss = (s if s.dtype is torch.float32 else s.float()) / norm_ref  # .float() is a dispatch even on float32
            if prec.scaler is not None:
                prec.scaler.scale(loss).backward()
            else:
                loss.backward()
        if due:  # the noise scale from micro-batches and the per-sample factors, free
            scale = prec.scale_tensor()
            runner.after_micro_backward(st.step, torch.as_tensor(c, device=st.device),
                                        (scale if scale is not None else 1.0) / norm_ref,
                                        int(idx.numel()), out.per_sample)
        sums.append(out.sum.detach())
        counts.append(c)
        for name, v in out.components.items():
            comps.setdefault(name, []).append(v.detach())
        if out.per_sample is not None:
            per_sample.append((idx, out.per_sample.detach()))
        n_samples += int(idx.numel())

    if probe is not None and probe.armed:
        probe.disarm()
    # every scalar of this rank the guards need, packed in one stack of device scalars
    # (constants never become tensors); grad norm and loss scale follow after clipping
    host_counts = dist is None and all(not isinstance(c, Tensor) for c in counts)
    names = list(comps)
    local: list[Tensor] = [*sums]
    if not host_counts:
        local += [torch.as_tensor(c, device=st.device) for c in counts]
    act_x = probe.take() if probe is not None else None  # the first micro-batch's last-layer input
    act: Tensor | None = None
    if act_x is not None and dist is not None:  # gathered with the rank's scalars
        act = l2(act_x)
        local.append(act)
    if input_norms and dist is not None:  # across ranks: each micro-batch's largest norm, gathered
        local += [n.max() for _, n, _ in input_norms]
    at_comps = len(local)
    for n in names:
        local += comps[n]

    params = st.params
    # the gradient list only where it is used (clipping takes the parameters themselves)
    clip = max_norm * st.clip_mult
    if dist is None:
        total: Tensor | float = sum(counts) if host_counts else sum(local[k:2 * k])
        # now exactly sum / total count; with equal host counts the factor is exactly 1: no pass
        if k > 1 and (not host_counts or norm_ref != total) and (grads := grads_of(params)):
            torch._foreach_mul_(grads, norm_ref / total)
    else:  # one all_gather: every rank's scalars, so that every rank reaches the same verdict
        table = dist.gather_scalars(local)  # (world, len(local) + 1)
        total = table[:, k:2 * k].sum()
        if grads := grads_of(params):
            torch._foreach_mul_(grads, dist.grad_correction(norm_ref, total))  # sum / global count
    if force_overflow and (grads := grads_of(params)):
        grads[0].fill_(float("inf"))  # fault injection: as if the scaled gradient overflowed
    if prec.scaler is not None:
        prec.scaler.unscale_(opt)  # records inf checks; the scaler skips and lowers its scale on overflow
    # clipping; in one process the probe's norm rides in the gradients' _foreach_norm call
    grad_norm, act_norm = clip_and_norms(params, clip, act_x if act is None else None, st.one_kind)

    # --- the single host sync of the step: every scalar the guards and sinks need
    if dist is not None and grad_norm is not None:
        grad_norm = dist_plain(grad_norm)  # FSDP2: a DTensor holding the global norm
    tail = [grad_norm if grad_norm is not None else torch.zeros((), device=st.device)]
    if act_norm is not None:
        tail.append(act_norm)
    scale = prec.scale_tensor()
    if scale is not None:
        tail.append(scale.reshape(()))
    n_local, n_tail = len(local), len(tail)
    per_sample_norms = n_samples <= HOST_NORMS_MAX
    if dist is None:
        # one read: the scalars (stack promotes mixed dtypes, e.g. a bf16 loss sum, to the
        # widest), then the input norms: per sample (the host takes the max), or each
        # micro-batch's max when the batch is large
        packed = torch.stack([*local, *tail])
        if input_norms:
            packed = torch.cat([packed, *(n if per_sample_norms else n.amax(0, keepdim=True)
                                          for _, n, _ in input_norms)])
        values = packed.tolist()
        rows = [values[:n_local]]
        end = n_local + n_tail
    else:  # the gathered table (world, n_local + 1) and this rank's tail, still one read
        values = torch.cat([table.flatten(), torch.stack([v.float() for v in tail])]).tolist()
        rows = dist.rows(values[:-n_tail], n_local)
        end = len(values)
    norm_v = values[end - n_tail]
    scale_v = values[end - 1] if scale is not None else 1.0

    # host-side reduction over ranks (one row per rank; a single row in one process)
    if len(rows) == 1:
        row = rows[0]
        total_v = float(total) if host_counts else sum(row[k:2 * k])
        loss_v = sum(row[:k]) / total_v
    else:
        total_v = float(total) if host_counts else sum(sum(r[k:2 * k]) for r in rows)
        loss_v = sum(sum(r[:k]) for r in rows) / total_v
    pos = k if host_counts else 2 * k
    act_v = 0.0
    if act_norm is not None:  # one process: after the grad norm in the tail
        act_v = probe.rms(values[end - n_tail + 1])
    elif act is not None:  # across ranks: the RMS over every rank's first micro-batch
        norm = rows[0][pos] if len(rows) == 1 else math.sqrt(sum(r[pos] ** 2 for r in rows) / len(rows))
        act_v, pos = probe.rms(norm), pos + 1
    if known is not None:
        input_v = known[1].largest_rms(known[0], micro.input_span)
    elif dist is None:
        input_v = largest_rms(values, end, input_norms, per_sample_norms)
    else:  # the same Python expression over the same rows on every rank: the same value everywhere
        input_v = max((r[pos + i] / math.sqrt(d) for r in rows for i, (_, _, d) in enumerate(input_norms)),
                      default=0.0)
    components = {n: sum(sum(r[at_comps + i * k: at_comps + (i + 1) * k]) for r in rows) / total_v
                  for i, n in enumerate(names)}
    n_samples *= len(rows)  # equal shards

    factor = st.lr_factor()  # once a step: apply_update takes it from the StepOutput
    overflow = prec.scaler is not None and not (norm_v == norm_v and abs(norm_v) != float("inf"))
    record = StepRecord(
        step=st.step,
        iteration=st.iteration + 1,
        loss=loss_v,
        grad_norm=norm_v,
        lr=st.peak_lr * factor,
        clip_norm=clip,
        loss_scale=scale_v,
        components=components,
        n_samples=n_samples,
        n_targets=int(total_v),
        time_s=time.perf_counter() - t_start,
        data_time_s=data_time,
        final_act_norm=act_v,
        input_rms=input_v,
        applied=not overflow,
        reason="fp16_overflow" if overflow else "",
    )
    return record, StepOutput(per_sample=per_sample, input_norms=input_norms, lr_factor=factor,
                              runner_due=runner_due, input_table=known)


def dist_plain(t: Tensor) -> Tensor:
    """A DTensor's full value as a plain tensor (FSDP2's global grad norm); others unchanged."""
    full = getattr(t, "full_tensor", None)
    return full() if full is not None else t


def apply_update(st: TrainState, lr_factor: float | None = None) -> None:
    """Optimizer step with the scheduled LR, then EMA; advances the applied-step counter.
    ``lr_factor``: the factor compute_update already took (StepOutput.lr_factor)."""
    factor = st.lr_factor() if lr_factor is None else lr_factor
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
