"""The step's input measurement for the input guard: the largest per-sample input RMS over
every micro-batch, read in the step's one host sync, and the per-sample evidence kept for
the quarantine."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from trainwell.data.loader import BatchLoader
from trainwell.data.sampler import ResumableSampler
from trainwell.tasks.base import LossOutput, Task
from trainwell.train.precision import resolve_precision
from trainwell.train.probe import FinalActivationProbe
from trainwell.train.state import TrainState
from trainwell.train.step import compute_update


class Regression(Task):
    """y = w . x on inputs of a given shape ((N,), (N, D) or (N, C, H, W))."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.y = torch.zeros(len(x))

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(int(self.x[0].numel()), 1))

    def train_data(self):
        return self

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, idx):
        return self.x[idx], self.y[idx]

    def loss(self, model, batch):
        x, y = batch
        per_sample = (model(x.reshape(len(x), -1)).squeeze(1) - y) ** 2  # (B,)
        return LossOutput(per_sample.sum(), float(len(y)), {}, per_sample)


class RowwiseRegression(Regression):
    """The same task, whose get_batch declares itself row-wise: the loader fetches a step's
    batch once and cuts the micro-batches from it, and the step measures it in one op."""

    get_batch_rowwise = True


def one_step(x: torch.Tensor, accumulate: int, rowwise: bool = False):
    task = (RowwiseRegression if rowwise else Regression)(x)
    model = task.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cpu = torch.device("cpu")
    loader = BatchLoader(task, ResumableSampler(len(x), seed=0, shuffle=False), list, cpu, len(x), accumulate)
    st = TrainState(model, opt, lambda s: 1.0, 0.1, resolve_precision("fp32", cpu), loader, cpu)
    return compute_update(st, task, loader.next(), max_norm=1.0, probe=None, data_time=0.0,
                          t_start=time.perf_counter())


def expected_rms(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(len(x), -1).double()
    return flat.pow(2).mean(dim=1).sqrt()  # (N,)


@pytest.mark.parametrize("shape", [(12,), (12, 5), (12, 2, 3, 3)])
@pytest.mark.parametrize("accumulate", [1, 3])
@pytest.mark.parametrize("rowwise", [False, True])
def test_input_rms_is_the_largest_per_sample_rms(shape, accumulate, rowwise):
    """Every input rank (a (N,) input used to fail in flatten(1)), one or several
    micro-batches, fetched per micro-batch or cut from one batch."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    x[7] *= 30.0  # the largest sample sits in a later micro-batch
    record, out = one_step(x, accumulate, rowwise)
    assert len(out.input_norms) == accumulate
    rms = expected_rms(x)
    assert record.input_rms == pytest.approx(float(rms.max()), rel=1e-5)
    ids, per_sample = out.per_sample_input_rms()  # the quarantine's evidence
    assert ids.tolist() == list(range(len(x)))
    torch.testing.assert_close(per_sample.double(), rms, rtol=1e-5, atol=0)


@pytest.mark.parametrize("rowwise", [False, True])
def test_nan_input_in_a_later_micro_batch_is_seen(rowwise):
    """A NaN in any micro-batch makes input_rms NaN (Python's max() passes over a NaN that
    is not first, which used to hide one outside the first micro-batch)."""
    x = torch.ones(8, 4)
    x[6, 2] = float("nan")
    record, _ = one_step(x, 2, rowwise)
    assert math.isnan(record.input_rms)


def test_inf_input_gives_inf():
    x = torch.ones(8, 4)
    x[5, 0] = float("inf")
    record, _ = one_step(x, 2)
    assert record.input_rms == float("inf")


def test_integer_inputs_are_not_measured():
    x = torch.arange(16).reshape(8, 2)  # token-id-like inputs

    class Ids(Regression):
        def loss(self, model, batch):
            xi, y = batch
            return super().loss(model, (xi.float(), y))

    ids_task = Ids(x)
    model = ids_task.build_model()
    cpu = torch.device("cpu")
    loader = BatchLoader(ids_task, ResumableSampler(8, seed=0, shuffle=False), list, cpu, 8, 2)
    st = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda s: 1.0, 0.1,
                    resolve_precision("fp32", cpu), loader, cpu)
    record, out = compute_update(st, ids_task, loader.next(), max_norm=1.0, probe=None, data_time=0.0,
                                 t_start=time.perf_counter())
    assert record.input_rms == 0.0 and out.per_sample_input_rms() is None


@pytest.mark.parametrize("n, accumulate", [(12, 2), (12, 3), (10, 3)])
def test_host_count_accumulation_equals_the_full_batch(n, accumulate):
    """Host target counts: equal micro-batches (correction factor exactly 1) and unequal
    ones (4, 3, 3) give the full batch's gradient."""
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(2))

    def grads(k):
        task = Regression(x)
        task.y = torch.randn(n, generator=torch.Generator().manual_seed(3))
        model = task.build_model()
        cpu = torch.device("cpu")
        loader = BatchLoader(task, ResumableSampler(n, seed=0, shuffle=False), list, cpu, n, k)
        st = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda s: 1.0, 0.1,
                        resolve_precision("fp32", cpu), loader, cpu)
        record, _ = compute_update(st, task, loader.next(), max_norm=0.0, probe=None, data_time=0.0,
                                   t_start=time.perf_counter())
        return record, [p.grad.clone() for p in model.parameters()]

    full_record, full = grads(1)
    record, acc = grads(accumulate)
    for a, b in zip(acc, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert record.loss == pytest.approx(full_record.loss, rel=1e-6) and record.n_targets == n


def test_rowwise_batch_gives_the_same_step_as_per_micro_batch_fetches():
    """Cutting the micro-batches from one fetched batch changes no number of the step."""
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(4))
    a, _ = one_step(x, 3, rowwise=False)
    b, _ = one_step(x, 3, rowwise=True)
    assert (a.loss, a.grad_norm, a.input_rms) == (b.loss, b.grad_norm, b.input_rms)


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(5, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(x)))


def test_final_activation_probe_measures_the_first_micro_batch():
    """The probe measures the input of the last Linear in the step's first micro-batch, and
    its hook is gone once it is closed."""
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(5))
    task = RowwiseRegression(x)
    torch.manual_seed(0)
    model = TwoLayer()
    cpu = torch.device("cpu")
    loader = BatchLoader(task, ResumableSampler(12, seed=0, shuffle=False), list, cpu, 12, 3)
    st = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda s: 1.0, 0.1,
                    resolve_precision("fp32", cpu), loader, cpu)
    probe = FinalActivationProbe(model)
    micro = loader.next()
    record, _ = compute_update(st, task, micro, max_norm=1.0, probe=probe, data_time=0.0,
                               t_start=time.perf_counter())
    first = torch.relu(model.hidden(micro[0][1][0])).detach()  # (4, 4): the head's input
    expected = float(first.pow(2).mean().sqrt())
    assert record.final_act_norm == pytest.approx(expected, rel=1e-5)
    probe.arm()
    probe.disarm()  # a step that never reached the layer measures nothing
    assert probe.take() is None
    probe.close()
    assert not model.head._forward_hooks

