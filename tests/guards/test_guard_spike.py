from __future__ import annotations

import pytest
from guard_helpers import clean_values, record

from trainwell.guards import Action, SpikeGuard, Verdict


def run(g: SpikeGuard, values, start=0) -> list[Verdict]:
    out = []
    for i, v in enumerate(values, start):
        r = record(i, i + 1, loss=v["loss"], grad_norm=v["grad_norm"])
        verdict = g.check(r)
        if verdict.action is Action.APPLY:
            g.update(r)
        out.append(verdict)
    return out


@pytest.mark.parametrize("robust", [False, True])
def test_clean_noisy_runs_never_trigger(robust):
    for seed in range(10):
        verdicts = run(SpikeGuard(robust=robust), clean_values(seed))
        assert [v for v in verdicts if v.action is not Action.APPLY] == [], f"seed {seed}"


@pytest.mark.parametrize("quantity", ["loss", "grad_norm"])
def test_a_1e4_spike_after_warmup_is_skipped_with_evidence(quantity):
    values = clean_values(0, 300)
    values[200] = {**values[200], quantity: values[200][quantity] * 1e4}
    g = SpikeGuard()
    verdicts = run(g, values)
    skipped = [i for i, v in enumerate(verdicts) if v.action is Action.SKIP]
    assert skipped == [200]
    v = verdicts[200]
    assert v.reason == ("loss_spike" if quantity == "loss" else "grad_spike")
    z = v.evidence["z_loss" if quantity == "loss" else "z_grad"]
    assert z > 6
    assert {"loss_mean", "loss_std", "grad_geo_mean", "grad_log_std", "window_n"} <= set(v.evidence)
    assert "step 200" in v.message


def test_the_first_half_window_judges_only_a_far_loss_jump():
    """Until the window holds half its size the z-score is silent (OLMo-core, llm.c); from 8
    applied steps on, a loss more than 2 x sigma robust spreads above the median of the
    losses so far is already a spike. Nothing before 8 steps, and no gradient norm, early."""
    values = clean_values(1, 200)
    values[5] = {**values[5], "loss": values[5]["loss"] * 1e4}  # 5 applied steps: not judged
    values[40] = {**values[40], "loss": values[40]["loss"] * 1.3}  # far under the early bar
    values[50] = {**values[50], "grad_norm": values[50]["grad_norm"] * 1e4}  # gradients: not early
    values[63] = {**values[63], "loss": values[63]["loss"] * 1e4}  # 63 values seen, warmup 64
    values[150] = {**values[150], "loss": values[150]["loss"] * 2}  # the z-score's business
    verdicts = run(SpikeGuard(window=128), values)
    assert [i for i, v in enumerate(verdicts) if v.action is Action.SKIP] == [63, 150]
    assert "robust spreads above the median" in verdicts[63].message
    assert "of the first 63 applied steps" in verdicts[63].message


def test_skipped_records_do_not_enter_the_window():
    values = clean_values(2, 140)
    values[130] = {**values[130], "loss": 1e5}
    g = SpikeGuard(window=128)
    run(g, values[:130])
    before = g.state_dict()
    assert run(g, values[130:131], start=130)[0].action is Action.SKIP
    assert g.state_dict() == before  # skipped: nothing advanced
    assert 1e5 not in g.state_dict()["loss_window"]
    run(g, values[131:], start=131)
    assert len(g.state_dict()["loss_window"]) == 128
    assert g.state_dict()["loss_window"][-1] == values[-1]["loss"]


def test_a_drop_is_not_a_spike():
    values = clean_values(3, 200)
    values[150] = {**values[150], "loss": values[150]["loss"] * 1e-3, "grad_norm": 1e-6}
    assert all(v.action is Action.APPLY for v in run(SpikeGuard(), values))


def test_robust_mode_still_sees_a_spike_behind_an_earlier_outlier():
    values = clean_values(4, 200)
    # an enormous value that was applied (e.g. before the guard existed) inflates the std
    values[100] = {**values[100], "loss": 1e6}
    plain, robust = SpikeGuard(), SpikeGuard(robust=True)
    for g in (plain, robust):
        run(g, values[:100])
        g.update(record(100, 101, loss=1e6))
        run(g, values[101:150], start=101)
    spike = record(150, 151, loss=values[150]["loss"] * 50)
    assert plain.check(spike).action is Action.APPLY  # masked by the inflated std
    assert robust.check(spike).action is Action.SKIP


def test_state_round_trip_mid_sequence_continues_identically():
    values = clean_values(5, 400)
    for i in (250, 300, 350):
        values[i] = {**values[i], "loss": values[i]["loss"] * 100}
    a = SpikeGuard()
    run(a, values[:200])
    b = SpikeGuard()
    b.load_state_dict(a.state_dict())
    va, vb = run(a, values[200:], start=200), run(b, values[200:], start=200)
    assert va == vb
    assert sum(v.action is Action.SKIP for v in va) == 3
    assert a.state_dict() == b.state_dict()


def converged_values(n: int = 600, seed: int = 0) -> list[dict[str, float]]:
    """A classifier trained close to zero loss, shaped like a measured digits MLP run: the
    loss falls from ln 10 to ~0.005 and now and then a batch with one hard sample costs
    0.05-0.17 (30x the window mean); the gradient norm then jumps ~12x."""
    import math
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        level = 2.3 * math.exp(-i / 40) + 0.005
        loss = level * math.exp(rng.gauss(0, 0.1 if i < 50 else 0.6))  # heavy-tailed once fitted
        grad = (0.2 + 2 * math.exp(-i / 40)) * math.exp(rng.gauss(0, 0.5))
        if i > 200 and rng.random() < 0.03:  # a hard batch
            loss, grad = rng.uniform(0.05, 0.17), grad * rng.uniform(8, 14)
        out.append({"loss": loss, "grad_norm": grad})
    return out


def test_a_model_near_zero_loss_has_no_false_spikes():
    for seed in range(10):
        values = converged_values(seed=seed)
        assert [v for v in run(SpikeGuard(), values) if v.action is not Action.APPLY] == [], f"seed {seed}"
        # without the floor at the scale of the initial loss, the same series raises alarms
        assert any(v.action is Action.SKIP for v in run(SpikeGuard(loss_floor=0.0), values))


def test_a_blow_up_near_zero_loss_is_still_a_spike():
    values = converged_values(seed=1)
    values[400] = {"loss": 7.3, "grad_norm": 9.8}  # an LR x100 burst, as measured on digits
    skipped = [i for i, v in enumerate(run(SpikeGuard(), values)) if v.action is Action.SKIP]
    assert skipped == [400]


def steady_values(n: int = 300, seed: int = 0) -> list[dict[str, float]]:
    """A gradient norm that barely moves (a log-scale spread of 0.05): an ordinary 2.5x
    jump is then ~18 sigma on the log scale."""
    import math
    import random

    rng = random.Random(seed)
    return [{"loss": 3.0 + rng.gauss(0, 0.05), "grad_norm": 0.7 * math.exp(rng.gauss(0, 0.05))} for _ in range(n)]


def test_a_jump_under_the_grad_floor_is_no_spike_above_it_is():
    values = steady_values()
    values[200] = {**values[200], "grad_norm": values[200]["grad_norm"] * 2.5}
    values[250] = {**values[250], "grad_norm": values[250]["grad_norm"] * 4.0}
    skipped = [i for i, v in enumerate(run(SpikeGuard(), values)) if v.action is Action.SKIP]
    assert skipped == [250]
    # the plain 6-sigma test (floor 1) calls the 2.5x jump a spike too
    plain = [i for i, v in enumerate(run(SpikeGuard(grad_floor=1.0), values)) if v.action is Action.SKIP]
    assert plain == [200, 250]
    with pytest.raises(ValueError, match="spike_grad_floor"):
        SpikeGuard(grad_floor=0.5)
