from __future__ import annotations

import tomllib

import pytest
import tomli_w
from pydantic import ValidationError

from trainwell.drills import FaultsConfig
from trainwell.guards import GuardsConfig


@pytest.mark.parametrize("section", [GuardsConfig, FaultsConfig])
def test_every_field_is_documented(section):
    for name, info in section.model_fields.items():
        assert info.description and len(info.description) > 20, name


def test_defaults_are_on_and_follow_opt_and_olmo():
    cfg = GuardsConfig()
    assert cfg.enabled and cfg.rollback and cfg.quarantine
    assert (cfg.spike_window, cfg.spike_sigma) == (128, 6.0)
    assert (cfg.lr_factor, cfg.clip_factor, cfg.max_rollbacks) == (0.5, 0.3, 3)


def test_toml_round_trip():
    cfg = GuardsConfig(nonfinite="stop", spike_robust=True, max_skips=3)
    text = tomli_w.dumps(cfg.model_dump(mode="json"))
    assert GuardsConfig.model_validate(tomllib.loads(text)) == cfg
    faults = FaultsConfig(nan_batch_at=[3], lr_burst_at=10)
    data = {k: v for k, v in faults.model_dump(mode="json").items() if v is not None}
    assert FaultsConfig.model_validate(tomllib.loads(tomli_w.dumps(data))) == faults


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"nonfinite": "ignore"}, "nonfinite"),
        ({"spike_sigma": 0}, "spike_sigma"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
        ({"max_skips": 500}, "guards.max_skips"),
        ({"spike_windw": 64}, "spike_windw"),
    ],
)
def test_bad_values_name_their_key(bad, key):
    with pytest.raises(ValidationError, match=key):
        GuardsConfig(**bad)
