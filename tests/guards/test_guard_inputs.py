"""InputGuard from its first step: the data's prior, the first batches, the wide margin of the
warm-up, and the window deciding exactly as before once it is warm."""

from __future__ import annotations

import math

import pytest
import torch
from guard_helpers import record
from torch.utils.data import Dataset, IterableDataset

from trainwell.data.loader import BatchLoader, IterableLoader
from trainwell.data.sampler import ResumableSampler
from trainwell.guards import Action, Autopilot, GuardsConfig
from trainwell.guards.inputs import WARMUP_FACTOR, InputGuard
from trainwell.guards.prior import input_prior

CPU = torch.device("cpu")


def test_the_data_prior_arms_the_guard_from_the_first_step():
    guard = InputGuard(prior=(0.0, 0.1))  # per-sample RMS around 1
    skip = guard.check(record(input_rms=1e4))
    assert skip.action is Action.SKIP and skip.reason == "input_outlier"
    assert skip.evidence["warmup"] == "data prior" and "before the first step" in skip.message
    # the warm-up's margin: nothing within 10x of the data's scale is an outlier
    assert guard.check(record(input_rms=0.99 * WARMUP_FACTOR)).action is Action.APPLY
    assert guard.check(record(input_rms=1.01 * WARMUP_FACTOR)).action is Action.SKIP
    assert InputGuard().check(record(input_rms=1e4)).action is Action.APPLY  # no prior, no batch yet


def test_without_a_prior_the_first_applied_batches_are_the_reference():
    guard = InputGuard()
    guard.update(record(input_rms=2.0))
    assert guard.check(record(input_rms=2e4)).evidence["warmup"] == "first batches"
    assert guard.check(record(input_rms=15.0)).action is Action.APPLY  # < 10x


def test_the_warmup_quarantines_only_the_extreme_samples():
    guard = InputGuard(prior=(0.0, 0.1))
    bad = guard.outliers(torch.tensor([1.0, 1.3, 1e4, 0.8, math.nan, 9.0]))
    assert bad.tolist() == [False, False, True, False, True, False]


@pytest.mark.parametrize("prior", [None, (0.0, 0.1), (3.0, 0.5)])
def test_once_warm_the_window_alone_decides_as_before(prior):
    plain, armed = InputGuard(), InputGuard(prior=prior)
    for t in range(64):  # the warm-up: half the window
        r = record(step=t, input_rms=1.0 + 0.01 * (t % 7))
        plain.update(r)
        armed.update(r)
    assert armed._ref == plain._ref
    x = torch.tensor([1.0, 1.2, 3.0, 1e4])
    assert armed.outliers(x).tolist() == plain.outliers(x).tolist() == [False, False, True, True]
    assert "over the last 64 applied steps" in armed.check(record(input_rms=1e4)).message


def test_in_the_warmup_the_threshold_is_the_priors_sigma_bound():
    pilot = Autopilot(GuardsConfig(), input_prior=(0.1, 0.2))
    mean, std = pilot.guard("inputs")._ref
    at = math.exp(mean + pilot.guard("inputs").sigma * std)
    assert pilot.decide(record(input_rms=at * (1 - 1e-3))).action is Action.APPLY
    assert pilot.decide(record(input_rms=at * 1.01)).action is Action.SKIP


class Points(Dataset):
    """4096 float samples, ``poison`` scaled x1e4; ``noisy`` draws a global random number per item."""

    def __init__(self, poison=(), noisy=False):
        self.x = torch.randn(4096, 16, generator=torch.Generator().manual_seed(3))
        self.x[list(poison)] *= 1e4
        self.noisy = noisy

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.noisy:
            torch.rand(1)  # an augmentation would draw from the global generator
        return self.x[i], 0


def loader(data, batch=32):
    return BatchLoader(data, ResumableSampler(len(data), seed=0), torch.utils.data.default_collate, CPU, batch, 1)


def test_the_prior_is_the_data_scale_and_a_few_poisoned_samples_cannot_move_it():
    center, spread = input_prior(loader(Points()))
    rms = Points().x.norm(dim=1) / 4.0  # the step's measure: L2 norm / sqrt(D)
    assert abs(center - rms.log().median().item()) < 0.05
    assert 0.1 < spread < 0.4
    # 64 of 4096 poisoned: about 4 in the draw of 256, at +9.2 in log scale each
    poisoned = input_prior(loader(Points(poison=range(0, 4096, 64))))
    assert abs(poisoned[0] - center) < 0.05 and abs(poisoned[1] - spread) < 0.05


def test_reading_the_prior_leaves_the_runs_random_numbers_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert input_prior(loader(Points(noisy=True))) is not None
    assert torch.equal(torch.rand(3), expected)


class Stream(IterableDataset):
    def __iter__(self):
        for _ in range(100):
            yield torch.randn(16), 0


class Tokens(Dataset):
    def __len__(self):
        return 100

    def __getitem__(self, i):
        return torch.arange(8) + i, 0


def test_no_prior_for_a_stream_nor_for_token_ids():
    stream = IterableLoader(Stream(), torch.utils.data.default_collate, CPU, 32, 1)
    assert input_prior(stream) is None  # reading ahead would consume the stream
    assert input_prior(loader(Tokens())) is None
