from __future__ import annotations

from guard_helpers import clean_values, record

from trainwell.guards import HealthTracker


def fed(values, window=100, intervene_at=(), **kw) -> HealthTracker:
    h = HealthTracker(window=window, **kw)
    for i, v in enumerate(values):
        h.update(record(i, i + 1, **v), intervened=i in intervene_at)
    return h


def test_clean_run_is_healthy_and_a_fresh_run_too():
    for seed in range(5):
        ok, ev = fed(clean_values(seed, 500)).healthy()
        assert ok, ev["vetoes"]
    assert HealthTracker().healthy()[0]


def test_a_recent_intervention_vetoes():
    values = clean_values(0, 500)
    ok, ev = fed(values, intervene_at={450}).healthy()
    assert not ok and "intervened" in ev["vetoes"]
    assert ev["steps_since_intervention"] == 49
    assert fed(values, intervene_at={350}).healthy()[0]


def test_a_rising_smoothed_loss_vetoes():
    values = clean_values(1, 500)
    values[400:] = [{**v, "loss": v["loss"] * (1 + 0.004 * i)} for i, v in enumerate(values[400:])]
    ok, ev = fed(values).healthy()
    assert not ok and "rising" in ev["vetoes"]
    assert ev["loss_ema"] > ev["loss_ema_before"]


def test_a_low_fp16_loss_scale_vetoes():
    values = [{**v, "loss_scale": 65536.0} for v in clean_values(2, 300)]
    assert fed(values).healthy()[0]
    values[-1]["loss_scale"] = 0.5
    ok, ev = fed(values).healthy()
    assert not ok and "loss scale" in ev["vetoes"]


def test_a_growing_final_activation_norm_vetoes_and_zero_means_untracked():
    values = clean_values(3, 500)
    grow = [{**v, "final_act_norm": 1.0 * 1.003**i} for i, v in enumerate(values)]
    ok, ev = fed(grow).healthy()
    assert not ok and "activation" in ev["vetoes"]
    assert ev["act_norm_last_quarter"] > ev["act_norm_first_quarter"]
    untracked = [{**v, "final_act_norm": 0.0} for v in values]
    assert fed(untracked).healthy()[0]
    # noisy but flat, or trending down (OPT's healthy restart points): fine
    down = [{**v, "final_act_norm": 2.0 * 0.998**i} for i, v in enumerate(values)]
    assert fed(down).healthy()[0]


def test_skipped_steps_do_not_enter_the_windows():
    h = fed(clean_values(4, 200))
    before = h.state_dict()
    h.update(record(200, 201, loss=1e4, final_act_norm=1e4, applied=False), intervened=True)
    after = h.state_dict()
    assert after["loss_ema_history"] == before["loss_ema_history"]
    assert after["act_norm_window"] == before["act_norm_window"]
    assert after["steps_since_intervention"] == 0


def test_state_round_trip():
    values = clean_values(5, 300)
    a = fed(values[:150])
    b = HealthTracker()
    b.load_state_dict(a.state_dict())
    for i, v in enumerate(values[150:], 150):
        for h in (a, b):
            h.update(record(i, i + 1, **v), intervened=i == 200)
    assert a.state_dict() == b.state_dict() and a.healthy() == b.healthy()
