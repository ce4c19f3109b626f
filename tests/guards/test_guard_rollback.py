from __future__ import annotations

import math

from guard_helpers import clean_values, record

from trainwell.guards import APPLY, Action, RollbackPolicy, Verdict
from trainwell.guards.base import worst

SKIP = Verdict(Action.SKIP, "loss_spike", "spike")


def feed(p: RollbackPolicy, losses, skip_at=(), start=0, loss_scale=1.0) -> list[Verdict]:
    """Drive the policy alone; ``skip_at``: indices where a guard said SKIP."""
    out = []
    step = start
    for i, loss in enumerate(losses):
        skipping = i in skip_at
        rec = record(step, start + i + 1, loss=loss, loss_scale=loss_scale)
        v = worst(SKIP if skipping else APPLY, p.check(rec, skipping=skipping))
        p.update(rec, v)
        out.append(v)
        step += v.action is Action.APPLY
    return out


def test_clean_runs_never_trigger():
    for seed in range(10):
        p = RollbackPolicy()
        verdicts = feed(p, [v["loss"] for v in clean_values(seed)])
        assert all(v.action is Action.APPLY for v in verdicts), f"seed {seed}"
        assert p.rollbacks == 0


def test_k_skips_within_w_steps_trigger_a_rollback():
    p = RollbackPolicy(max_skips=3, skip_window=10)
    verdicts = feed(p, [2.0] * 30, skip_at={20, 24, 28})
    assert [v.action for v in verdicts[20:29:4]] == [Action.SKIP, Action.SKIP, Action.ROLLBACK]
    v = verdicts[28]
    assert v.reason == "skips" and v.evidence["skips"] == 3 and "rollback" in v.message
    assert p.rollbacks == 1


def test_skips_spread_wider_than_w_do_not_trigger():
    p = RollbackPolicy(max_skips=3, skip_window=10)
    verdicts = feed(p, [2.0] * 40, skip_at={5, 15, 25, 35})
    assert Action.ROLLBACK not in {v.action for v in verdicts}


def test_a_slow_divergence_triggers_a_rollback():
    p = RollbackPolicy(divergence_factor=1.5, divergence_steps=20)
    # healthy at 2.0, then the loss creeps up 1% a step: never a 6-sigma spike, still a divergence
    losses = [2.0] * 200 + [2.0 * 1.01**t for t in range(200)]
    verdicts = feed(p, losses)
    first = next(i for i, v in enumerate(verdicts) if v.action is not Action.APPLY)
    v = verdicts[first]
    assert v.action is Action.ROLLBACK and v.reason == "divergence"
    assert v.evidence["loss_ema"] > 1.5 * v.evidence["best_loss_ema"]
    assert 200 < first < 330


def test_a_bump_shorter_than_divergence_steps_does_not_trigger():
    p = RollbackPolicy(divergence_factor=1.5, divergence_steps=20, ema_beta=0.5)
    losses = [2.0] * 100 + [10.0] * 10 + [2.0] * 100
    assert all(v.action is Action.APPLY for v in feed(p, losses))


def test_near_zero_loss_a_few_hard_batches_are_not_a_divergence():
    # ln 10 at init, fitted to 0.005, then a stretch of hard batches triples the smoothed
    # loss (measured on digits: 0.005 -> 0.029): small against the problem's scale
    losses = [2.3 * math.exp(-t / 30) + 0.005 for t in range(400)] + [0.06] * 60 + [0.005] * 100
    assert all(v.action is Action.APPLY for v in feed(RollbackPolicy(), losses))
    # the pure 1.5x rule would have rolled back
    assert any(v.reason == "divergence" for v in feed(RollbackPolicy(divergence_floor=0.0), losses))
    # a real divergence from there (back to a random guess) still is one
    verdicts = feed(RollbackPolicy(), losses[:460] + [2.3] * 60)
    assert any(v.reason == "divergence" for v in verdicts[460:])


def test_negative_losses_use_the_magnitude_of_the_baseline():
    p = RollbackPolicy(divergence_factor=1.5, divergence_steps=5, ema_beta=0.5)
    verdicts = feed(p, [-4.0] * 50 + [-1.0] * 30)
    assert verdicts[49].action is Action.APPLY
    assert Action.ROLLBACK in {v.action for v in verdicts[50:]}


def test_fp16_loss_scale_below_one_triggers_a_rollback():
    p = RollbackPolicy()
    assert p.check(record(loss_scale=1.0)).action is Action.APPLY
    v = p.check(record(loss_scale=0.5))
    assert v.action is Action.ROLLBACK and v.reason == "loss_scale"
    assert RollbackPolicy(min_loss_scale=0.0).check(record(loss_scale=0.0)).action is Action.APPLY


def test_stop_after_max_rollbacks_without_recovery():
    p = RollbackPolicy(max_rollbacks=2, recovery_steps=10_000)
    actions = []
    for _ in range(3):
        # restored to step 0, the run collapses again at step 5 each time
        actions += [v.action for v in feed(p, [2.0] * 5, loss_scale=1.0)]
        actions.append(feed(p, [2.0], loss_scale=0.25, start=5)[0].action)
    assert actions.count(Action.ROLLBACK) == 2
    assert actions[-1] is Action.STOP
    v = p.check(record(loss_scale=0.25))
    assert (
        v.action is Action.STOP
        and "guards.max_rollbacks=2" in v.message
        and "optim.lr" in v.message
    )


def test_recovery_resets_the_count():
    p = RollbackPolicy(max_rollbacks=1, recovery_steps=50)
    feed(p, [2.0] * 100)
    assert feed(p, [2.0], loss_scale=0.5)[0].action is Action.ROLLBACK
    assert p.since_recovery == 1
    # back to the pre-rollback level: recovered, so the next trigger rolls back again
    feed(p, [1.9] * 10)
    assert p.since_recovery == 0 and p.rollbacks == 1
    assert feed(p, [2.0], loss_scale=0.5)[0].action is Action.ROLLBACK
    # a plateau above the old best also counts after recovery_steps clean steps
    feed(p, [2.5] * 49)
    assert p.since_recovery == 1
    feed(p, [2.5])
    assert p.since_recovery == 0


def test_state_round_trip_continues_identically():
    losses = [v["loss"] for v in clean_values(7, 300)] + [9.0 * 1.01**t for t in range(200)]
    skips = {310, 330, 331}
    a = RollbackPolicy()
    feed(a, losses[:250], skip_at=skips)
    b = RollbackPolicy()
    b.load_state_dict(a.state_dict())
    rest = {i - 250 for i in skips if i >= 250}
    assert feed(a, losses[250:], skip_at=rest, start=250) == feed(
        b, losses[250:], skip_at=rest, start=250
    )
    assert a.state_dict() == b.state_dict()
    assert a.rollbacks >= 1
    assert not any(isinstance(x, float) and math.isnan(x) for x in a.state_dict().values())


def test_after_a_restore_divergence_is_judged_against_the_restored_state():
    """A restart from the state before the first update (no best yet) sits at the initial
    loss, far above the best the run reached later: that is no divergence. A restart from a
    checkpoint is judged against that checkpoint's own best."""
    p = RollbackPolicy(divergence_steps=10)
    feed(p, [6.0 - 0.05 * i for i in range(100)])  # the run got its smoothed loss down to ~1.4
    before = p.best
    initial_state = RollbackPolicy().state_dict()  # what the autopilot saved before step 1
    p.update(record(100, 101, loss=9.0), Verdict(Action.ROLLBACK, "skips", "rollback"))
    p.rebase(initial_state)
    restarted = feed(p, [6.0 - 0.01 * i for i in range(40)], start=0)  # from the initial loss, falling
    assert all(v.action is Action.APPLY for v in restarted)  # judged against the old best: a rollback at once
    assert p.target == before  # recovery still means getting back to the level before the incident
    checkpoint = {**initial_state, "best_loss_ema": 2.0}
    p.rebase(checkpoint)
    diverging = feed(p, [4.0] * 30, start=40)
    assert any(v.action is Action.ROLLBACK and v.reason == "divergence" for v in diverging)
