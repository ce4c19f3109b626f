"""Methods that cannot run are reported, a fallback is named, skipped layers stay fp32; the
measures checked against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from q_helpers import tiny_gpt, tokens
from scipy import stats

from trainwell.quantize.measure import (
    Evaluation,
    bootstrap_std,
    paired_interval,
    sqnr_db,
    tail_stats,
)
from trainwell.quantize.methods import METHODS, Candidate, Method, apply_method, is_quantized


def _fails() -> object:
    raise ImportError("Requires a kernel package this machine lacks")


def test_a_method_with_no_config_that_runs_is_not_available():
    method = Method("nothing", "never runs", (Candidate("Missing()", _fails),))
    applied = apply_method(tiny_gpt(), method, set(), lambda m: m(tokens()))
    assert applied.model is None
    assert applied.why_not == "Missing() not available here: ImportError: Requires a kernel package this machine lacks"


def test_the_next_candidate_runs_when_the_first_cannot_and_the_note_says_so():
    int8 = METHODS["int8-weight"].candidates[0]
    method = Method("m", "fallback", (Candidate("Missing()", _fails), int8))
    applied = apply_method(tiny_gpt(), method, set(), lambda m: m(tokens()))
    assert applied.model is not None and applied.config == int8.label
    assert applied.notes == ["Missing() not available here: ImportError: Requires a kernel package this machine lacks"]


def test_a_config_whose_forward_fails_is_not_available():
    applied = apply_method(tiny_gpt(), METHODS["int8-weight"], set(), lambda m: m(torch.zeros(2, 99, dtype=torch.long)))
    assert applied.model is None and "not available here" in applied.why_not


def test_skipped_layers_keep_their_fp32_weights():
    model = tiny_gpt()
    applied = apply_method(model, METHODS["int8-dynamic"], {"blocks.0.mlp.proj"}, lambda m: m(tokens()))
    q = applied.model
    assert not is_quantized(q.blocks[0].mlp.proj.weight)
    assert torch.equal(q.blocks[0].mlp.proj.weight, model.blocks[0].mlp.proj.weight)
    assert is_quantized(q.blocks[0].mlp.fc.weight)
    assert "blocks.0.mlp.proj" not in applied.quantized and "blocks.0.mlp.fc" in applied.quantized


def test_sqnr_matches_its_definition_and_torchao():
    from trainwell.quantize.methods import torchao

    torchao()
    from torchao.quantization.utils import compute_error

    torch.manual_seed(0)
    x = torch.randn(100)
    y = x + 0.01 * torch.randn(100)
    expected = 20 * math.log10(float(x.norm()) / float((x - y).norm()))
    assert sqnr_db(x, y) == pytest.approx(expected, rel=1e-5)
    assert sqnr_db(x, y) == pytest.approx(float(compute_error(x, y)), rel=1e-4)
    assert sqnr_db(x, x) == math.inf


def test_tail_stats_match_numpy_and_scipy():
    torch.manual_seed(0)
    x = torch.randn(5000) ** 3  # heavy tails
    max_std, kurt = tail_stats(x)
    a = x.double().numpy()
    assert max_std == pytest.approx(np.abs(a).max() / a.std(), rel=1e-4)
    assert kurt == pytest.approx(stats.kurtosis(a, fisher=False), rel=1e-4)
    assert all(math.isnan(v) for v in tail_stats(torch.ones(10)))


def test_bootstrap_std_is_the_spread_of_the_mean_over_batches():
    gen = torch.Generator().manual_seed(0)
    means = (2.0 + 0.1 * torch.randn(400, generator=gen)).tolist()  # 400 batches of 10 targets
    ev = Evaluation({"m": [10 * v for v in means]}, {"m": [10.0] * 400})
    expected = float(np.std(means, ddof=1)) / math.sqrt(400)
    assert bootstrap_std(ev, "m") == pytest.approx(expected, rel=0.1)
    same = Evaluation({"m": [3.0] * 5}, {"m": [1.0] * 5})
    assert bootstrap_std(same, "m") == pytest.approx(0.0, abs=1e-12)


def test_the_paired_interval_cancels_what_both_models_share():
    gen = torch.Generator().manual_seed(0)
    fp32 = (2.0 + 0.5 * torch.randn(50, generator=gen)).tolist()  # batches of very different difficulty
    counts = [10.0] * 50
    shifted = Evaluation({"m": [10 * (v + 0.01) for v in fp32]}, {"m": counts})  # every target +0.01
    base = Evaluation({"m": [10 * v for v in fp32]}, {"m": counts})
    lo, hi = paired_interval(shifted, base, "m")
    assert lo == pytest.approx(0.01, abs=1e-9) and hi == pytest.approx(0.01, abs=1e-9)
    assert bootstrap_std(base, "m") > 0.05  # the unpaired spread would hide a change of 0.01


def test_the_cli_lists_the_methods_without_importing_them():
    from trainwell.quantize import METHOD_NAMES

    assert tuple(METHODS) == METHOD_NAMES
