"""A quantised model saved without pickle and loaded back: same outputs, ties kept."""

from __future__ import annotations

import json

import pytest
import torch
from q_helpers import tiny_gpt, tokens
from safetensors import safe_open

from trainwell.errors import CheckpointError
from trainwell.quantize import METHODS, load_quantized, read_quantized, save_quantized
from trainwell.quantize.methods import apply_method, is_quantized, torchao


def test_quantize_breaks_ties_and_apply_method_ties_them_again():
    ao = torchao()
    from trainwell.quantize.methods import _int8_weight

    model = tiny_gpt()
    assert model.lm_head.weight is model.wte.weight
    raw = tiny_gpt()
    ao.quantization.quantize_(raw, _int8_weight())
    # the fact the re-tie exists for: quantize_ swaps the head's weight only
    assert raw.lm_head.weight is not raw.wte.weight and not is_quantized(raw.wte.weight)

    applied = apply_method(model, METHODS["int8-weight"], set(), lambda m: m(tokens()))
    q = applied.model
    assert q.lm_head.weight is q.wte.weight and is_quantized(q.wte.weight)
    assert applied.retied == ["wte.weight = lm_head.weight"]
    assert model.lm_head.weight is model.wte.weight and not is_quantized(model.wte.weight)  # original untouched


@pytest.mark.parametrize("method", list(METHODS))
def test_save_and_load_back_gives_the_same_outputs(tmp_path, method):
    model = tiny_gpt()
    x = tokens()
    q = apply_method(model, METHODS[method], set(), lambda m: m(x)).model
    path = save_quantized(q, tmp_path / "q.safetensors", {"trainwell.quantize.method": method})

    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file
        keys, meta = set(f.keys()), f.metadata()
    stored = "wte.weight" if METHODS[method].tied_in_fp32 else "wte._weight_qdata"  # int4: tied pair in fp32
    assert stored in keys and not any(k.startswith("lm_head.") for k in keys)  # tied: stored once
    assert json.loads(meta["trainwell.tied"]) == {"lm_head.weight": "wte.weight"}
    assert meta["trainwell.quantize.method"] == method

    fresh = load_quantized(path, tiny_gpt(seed=5))  # other initial weights: all replaced
    assert fresh.lm_head.weight is fresh.wte.weight
    with torch.no_grad():
        assert torch.equal(fresh(x), q(x))
    assert not torch.equal(fresh(x), model(x))  # it is the quantised model that came back


def test_a_top_level_weight_round_trips(tmp_path):
    """torchao's unflatten splits names at their last dot: a bare Linear's 'weight' has none."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 8)
    x = torch.randn(3, 32)
    q = apply_method(lin, METHODS["int8-dynamic"], set(), lambda m: m(x)).model
    path = save_quantized(q, tmp_path / "lin.safetensors")
    state, meta = read_quantized(path)
    assert set(state) == {"weight", "bias"} and meta["trainwell.prefix"] == "model."
    fresh = load_quantized(path, torch.nn.Linear(32, 8))
    assert torch.equal(fresh(x), q(x))


def test_a_file_that_is_not_a_quantised_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_quantized(bad)
    q = apply_method(tiny_gpt(), METHODS["int8-weight"], set(), lambda m: m(tokens())).model
    path = save_quantized(q, tmp_path / "q.safetensors")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_quantized(path, torch.nn.Linear(3, 3))


def test_int4_keeps_the_tied_head_and_embedding_in_fp32():
    model = tiny_gpt()
    applied = apply_method(model, METHODS["int4-weight"], set(), lambda m: m(tokens()))
    q = applied.model
    assert q.lm_head.weight is q.wte.weight and not is_quantized(q.wte.weight)
    assert "lm_head" in applied.kept and "lm_head" not in applied.quantized
    assert any("lm_head kept in fp32" in n for n in applied.notes) and applied.why_not == ""
