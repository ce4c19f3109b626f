"""One contract test for the guard family: every registered guard satisfies the protocol,
check() is pure, its state is plain data that round-trips, a skipped step teaches it
nothing, and the autopilot asks it on every step (no shortcut a new guard could miss)."""

from __future__ import annotations

import json
import math

import pytest
from guard_helpers import clean_values, record

from trainwell.guards import GUARDS, Action, Autopilot, Guard, GuardContext, GuardsConfig, Verdict

PRIOR = GuardContext(input_prior=(0.0, 0.1))


def records(n: int = 200) -> list:
    return [record(i, i + 1, input_rms=1.0 + 0.01 * (i % 7), **v) for i, v in enumerate(clean_values(6, n))]


def probes(i: int) -> list:
    return [record(i, i + 1, loss=math.nan), record(i, i + 1, loss=1e9), record(i, i + 1, grad_norm=1e9),
            record(i, i + 1, input_rms=1e6), record(i, i + 1, loss_scale=1e-3)]


@pytest.mark.parametrize("name", GUARDS.names())
def test_every_guard_keeps_the_contract(name):
    g = GUARDS.get(name)(GuardsConfig(), PRIOR)
    assert isinstance(g, Guard) and g.name == name
    for rec in records():
        before = json.dumps(g.state_dict())
        for probe in (rec, *probes(rec.step)):
            assert isinstance(g.check(probe), Verdict)
        assert json.dumps(g.state_dict()) == before, "check() changed the state"
        g.update(rec)
    twin = GUARDS.get(name)(GuardsConfig(), PRIOR)
    twin.load_state_dict(json.loads(json.dumps(g.state_dict())))
    assert [twin.check(p) for p in probes(200)] == [g.check(p) for p in probes(200)]


@pytest.mark.parametrize("name", GUARDS.names())
def test_every_guard_objects_to_something(name):
    """After a clean warm-up, at least one of the extreme probes draws a SKIP or STOP from it."""
    g = GUARDS.get(name)(GuardsConfig(), PRIOR)
    for rec in records():
        g.update(rec)
    assert any(g.check(p).action is not Action.APPLY for p in probes(200))


class Tripwire:
    """A new guard that objects to every tenth update: nothing else mirrors its rule."""

    name = "tripwire"
    calls = 0

    def check(self, record) -> Verdict:  # noqa: ANN001
        Tripwire.calls += 1
        return Verdict(Action.SKIP, "tripwire", self.name) if record.iteration % 10 == 0 else Verdict(Action.APPLY)

    def update(self, record) -> None:  # noqa: ANN001
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_new_guard_is_asked_on_every_step(monkeypatch):
    monkeypatch.setitem(GUARDS._items, "tripwire", lambda cfg, ctx: Tripwire())
    pilot = Autopilot(GuardsConfig(use=["inputs", "spike", "tripwire"], max_skips=50))
    quiet = records(300)  # clean: no other guard objects
    for rec in quiet:
        verdict = pilot.decide(rec)
        assert (verdict.reason == "tripwire") == (rec.iteration % 10 == 0)
        pilot.after(rec, verdict)
    assert Tripwire.calls == len(quiet)


def test_unknown_guard_names_are_config_errors():
    from trainwell.config import load_config
    from trainwell.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown guard 'spkie'.*did you mean 'spike'"):
        load_config(overrides=["task.name=digits", "guards.use=['inputs','spkie']"])


def test_guards_use_chooses_the_guards():
    pilot = Autopilot(GuardsConfig(use=["spike"]))
    assert [g.name for g in pilot.guards] == ["nonfinite", "spike"]
    off = Autopilot(GuardsConfig(enabled=False))
    assert [g.name for g in off.guards] == ["nonfinite"]
