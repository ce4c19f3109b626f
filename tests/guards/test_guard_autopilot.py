from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from guard_helpers import clean_values, drive, interventions, record

from trainwell.guards import (
    Action,
    Autopilot,
    GuardsConfig,
    read_logbook,
)


def test_clean_runs_have_zero_interventions(tmp_path):
    for seed in range(10):
        pilot = Autopilot(GuardsConfig(), tmp_path)
        verdicts = drive(pilot, clean_values(seed))
        assert interventions(verdicts) == [], f"seed {seed}"
        assert pilot.metrics() == {
            "guard/skips": 0,
            "guard/rollbacks": 0,
            "guard/quarantined": 0,
            "guard/fp16_overflows": 0,
        }
        healthy, evidence = pilot.checkpoint_health(1000)
        assert healthy, evidence
    assert not (tmp_path / "logbook.jsonl").exists()


@pytest.mark.parametrize("fault", [{"loss": math.nan}, {"grad_norm": math.inf}, {"loss": 1e5}])
def test_a_single_bad_step_is_skipped_logged_and_does_not_advance_anything(tmp_path, fault):
    values = clean_values(0, 400)
    values[300] = {**values[300], **fault}
    pilot = Autopilot(GuardsConfig(), tmp_path)
    drive(pilot, values[:300])
    before = pilot.state_dict()
    (v,) = drive(pilot, values[300:301], start=(300, 300))
    assert v.action is Action.SKIP
    after = pilot.state_dict()
    assert after["spike"] == before["spike"] and after["nonfinite"] == before["nonfinite"]
    assert after["health"]["loss_ema_history"] == before["health"]["loss_ema_history"]
    assert interventions(drive(pilot, values[301:], start=(300, 301))) == []
    assert pilot.metrics()["guard/skips"] == 1
    (event,) = read_logbook(tmp_path)
    assert event["kind"] == "skip" and event["step"] == 300 and event["iteration"] == 301
    assert event["reason"] in ("nonfinite", "loss_spike") and "step 300" in event["message"]


def test_a_lasting_divergence_rolls_back_then_stops_after_max_rollbacks(tmp_path):
    cfg = GuardsConfig(max_rollbacks=2)
    pilot = Autopilot(cfg, tmp_path)
    values = clean_values(1, 400)
    drive(pilot, values[:300])
    healthy, _ = pilot.checkpoint_health(300)
    assert healthy
    checkpoint = copy.deepcopy(pilot.state_dict())
    # an LR burst wrecked the weights: the loss sits 3x above its level from now on
    broken = [{**v, "loss": 3 * v["loss"]} for v in values[300:]]
    lr_mult = clip_mult = 1.0
    actions = []
    for attempt in range(3):
        verdicts = drive(pilot, broken, start=(300, 300 + 100 * attempt))
        final = next(v for v in verdicts if v.action in (Action.ROLLBACK, Action.STOP))
        assert [v.action for v in verdicts[: verdicts.index(final)]].count(
            Action.SKIP
        ) == cfg.max_skips - 1
        actions.append(final.action)
        if final.action is Action.STOP:
            break
        pilot.load_state_dict(checkpoint, rollback=True)
        new_lr, new_clip = pilot.rollback_multipliers(lr_mult, clip_mult)
        pilot.on_rollback(
            305, 300, lr_mult, new_lr, clip_mult, new_clip, iteration=305, data_skip=0
        )
        lr_mult, clip_mult = new_lr, new_clip
    assert actions == [Action.ROLLBACK, Action.ROLLBACK, Action.STOP]
    assert (lr_mult, clip_mult) == (0.25, 0.3)
    assert "guards.max_rollbacks=2" in final.message
    assert pilot.metrics()["guard/rollbacks"] == 2 and pilot.metrics()["guard/skips"] == 12
    kinds = [e["kind"] for e in read_logbook(tmp_path)]
    assert kinds.count("rollback") == 2 and kinds.count("restart") == 2 and kinds[-1] == "stop"
    pilot.logbook.write_markdown()
    md = (tmp_path / "logbook.md").read_text()
    assert (
        "step 300" in md and "loss spike" in md and "x0.25" in md and "The run stopped here" in md
    )
    assert not pilot.checkpoint_health(300)[0]  # a rollback just happened


def test_recovery_after_a_rollback_is_logged(tmp_path):
    pilot = Autopilot(GuardsConfig(recovery_steps=50), tmp_path)
    values = clean_values(2, 600)
    drive(pilot, values[:300])
    checkpoint = copy.deepcopy(pilot.state_dict())
    drive(pilot, [{**v, "loss": 3 * v["loss"]} for v in values[300:305]], start=(300, 300))
    assert pilot.metrics()["guard/rollbacks"] == 1
    pilot.load_state_dict(checkpoint, rollback=True)
    pilot.on_rollback(300, 300, 1.0, 0.5, 1.0, 0.3)
    drive(pilot, values[300:], start=(300, 305))
    recovered = [e for e in read_logbook(tmp_path) if e["kind"] == "recovered"]
    assert len(recovered) == 1 and "Recovered at step" in recovered[0]["message"]
    assert pilot.rollback.since_recovery == 0


def test_rollback_restore_keeps_history_and_resume_restores_it():
    pilot = Autopilot()
    drive(pilot, clean_values(3, 200))
    checkpoint = copy.deepcopy(pilot.state_dict())
    drive(pilot, [{"loss": math.nan, "grad_norm": 1.0}] * 5, start=(200, 200))
    pilot.on_quarantine([4, 8], step=200)
    assert pilot.metrics()["guard/rollbacks"] == 1
    pilot.load_state_dict(checkpoint, rollback=True)
    assert pilot.metrics() == {
        "guard/skips": 4,
        "guard/rollbacks": 1,
        "guard/quarantined": 2,
        "guard/fp16_overflows": 0,
    }
    assert pilot.state_dict()["spike"] == checkpoint["spike"]
    pilot.load_state_dict(checkpoint)  # a resume: the run as it was at the checkpoint
    assert pilot.state_dict() == checkpoint


def test_state_round_trip_mid_sequence_continues_identically(tmp_path):
    values = clean_values(4, 900)
    for i in (600, 700, 701):
        values[i] = {**values[i], "loss": values[i]["loss"] * 100}
    values[650] = {**values[650], "grad_norm": math.nan}
    a = Autopilot(GuardsConfig(spike_robust=True))
    drive(a, values[:500])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # plain data: no pickle of our classes
    json.dumps(state)
    b = Autopilot(GuardsConfig(spike_robust=True))
    b.load_state_dict(state)
    va = drive(a, values[500:], start=(500, 500))
    vb = drive(b, values[500:], start=(500, 500))
    assert va == vb and len(interventions(va)) == 4
    assert a.state_dict() == b.state_dict()


def test_fp16_overflow_is_counted_not_an_intervention_until_the_scale_collapses(tmp_path):
    pilot = Autopilot(GuardsConfig(), tmp_path)
    values = [{**v, "loss_scale": 2.0**16} for v in clean_values(5, 300)]
    drive(pilot, values)
    before = pilot.state_dict()["spike"]
    overflow = {
        "loss": 2.0,
        "grad_norm": math.inf,
        "loss_scale": 2.0**15,
        "applied": False,
        "reason": "fp16_overflow",
    }
    assert interventions(drive(pilot, [overflow] * 3, start=(300, 300))) == []
    assert pilot.metrics()["guard/fp16_overflows"] == 3 and pilot.metrics()["guard/skips"] == 0
    assert pilot.state_dict()["spike"] == before
    (v,) = drive(pilot, [{**overflow, "loss_scale": 0.5}], start=(300, 303))
    assert v.action is Action.ROLLBACK and v.reason == "loss_scale"


def test_disabled_autopilot_still_stops_on_nan_and_no_rollback_means_stop():
    off = Autopilot(GuardsConfig(enabled=False))
    assert off.decide(record(loss=1e9)).action is Action.APPLY
    assert off.decide(record(loss=math.nan)).action is Action.STOP
    assert off.bad_samples(torch.tensor([1.0, 1.0, 1e9]), torch.arange(3)) == []

    no_rollback = Autopilot(GuardsConfig(rollback=False, max_skips=2))
    verdicts = drive(no_rollback, [{"loss": math.nan, "grad_norm": 1.0}] * 2)
    assert verdicts[-1].action is Action.STOP and "rollbacks are off" in verdicts[-1].message


def test_disabled_autopilot_keeps_no_guard_windows():
    """Off, only the non-finite guard runs (no windows to move); on, the windows move."""
    off, on = Autopilot(GuardsConfig(enabled=False)), Autopilot(GuardsConfig())
    for pilot in (off, on):
        drive(pilot, [{"loss": 2.0, "grad_norm": 1.0, "input_rms": 1.0}] * 5)
    assert "spike" not in off.state_dict() and "inputs" not in off.state_dict()
    assert len(on.state_dict()["spike"]["loss_window"]) == 5 and len(on.state_dict()["inputs"]["window"]) == 5


def test_guards_check_against_statistics_refreshed_on_every_change():
    """The spike and input guards keep their window statistics from the last update; a
    restored state (resume, rollback) must refresh them, or a check would use the old ones."""
    quiet = [{"loss": 2.0 + 0.01 * (i % 3), "grad_norm": 1.0, "input_rms": 1.0} for i in range(80)]
    a = Autopilot(GuardsConfig(spike_window=16))
    drive(a, quiet)
    b = Autopilot(GuardsConfig(spike_window=16))
    b.load_state_dict(a.state_dict())
    spike = record(loss=50.0)
    assert a.decide(spike).reason == b.decide(spike).reason == "loss_spike"
    outlier = record(input_rms=1e4)
    assert a.decide(outlier).reason == b.decide(outlier).reason == "input_outlier"
    c = Autopilot(GuardsConfig(spike_window=16))
    c.load_state_dict(Autopilot(GuardsConfig(spike_window=16)).state_dict())  # empty windows: silent
    assert c.decide(spike).action is Action.APPLY


def test_quarantine_through_the_autopilot(tmp_path):
    pilot = Autopilot(GuardsConfig(), tmp_path)
    loss = torch.linspace(1.0, 1.2, 16)
    loss[3] = 1e5
    ids = pilot.bad_samples(loss, torch.arange(100, 116))
    assert ids == [103]
    assert pilot.on_quarantine(ids, {"z": 1e4}, step=7, iteration=9) == [103]
    assert pilot.on_quarantine(ids, step=8) == []  # already quarantined: no second event
    assert pilot.quarantine.ids() == {103}
    (event,) = read_logbook(tmp_path)
    assert event["kind"] == "quarantine" and event["sample_ids"] == [103] and event["step"] == 7
    assert Autopilot(GuardsConfig(quarantine=False)).bad_samples(loss, torch.arange(16)) == []


def test_decide_is_pure():
    pilot = Autopilot()
    drive(pilot, clean_values(7, 300))
    before = json.dumps(pilot.state_dict())
    for rec in (
        record(300, 301, loss=math.nan),
        record(300, 301, loss=1e9),
        record(300, 301, loss_scale=0.1),
    ):
        pilot.decide(rec)
    assert json.dumps(pilot.state_dict()) == before
