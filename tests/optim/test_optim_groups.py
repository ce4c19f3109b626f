from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.errors import TrainwellError
from trainwell.optim import param_groups
from trainwell.optim.groups import output_head_parameter_ids


class TinyLM(nn.Module):
    """Embedding, a hidden Linear with bias, a LayerNorm, and a head tied to the embedding."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        return self.head(self.norm(torch.relu(self.hidden(self.emb(x)))))


def _by_name(groups: list[dict]) -> dict[str, list[nn.Parameter]]:
    return {g["name"]: g["params"] for g in groups}


def test_decay_only_hidden_matrices() -> None:
    model = TinyLM()
    groups = _by_name(param_groups(model, 0.1))
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(groups["decay"]) == {id(model.hidden.weight)}
    assert ids(groups["no_decay"]) == {
        id(model.emb.weight),
        id(model.hidden.bias),
        id(model.norm.weight),
        id(model.norm.bias),
    }


def test_weight_decay_values_and_shared_parameter_once() -> None:
    model = TinyLM()
    groups = param_groups(model, 0.25)
    wd = {g["name"]: g["weight_decay"] for g in groups}
    assert wd == {"decay": 0.25, "no_decay": 0.0}
    all_params = [p for g in groups for p in g["params"]]
    # The tied head adds no second copy of the embedding; every trainable tensor appears once.
    assert len(all_params) == len({id(p) for p in all_params}) == len(list(model.parameters()))


def test_untied_head_is_decayed_and_found_as_output_head() -> None:
    model = TinyLM()
    model.head.weight = nn.Parameter(torch.randn(11, 6))
    groups = _by_name(param_groups(model, 0.1))
    assert any(p is model.head.weight for p in groups["decay"])
    assert output_head_parameter_ids(model) == {id(model.head.weight)}


def test_frozen_parameters_left_out_and_empty_groups_dropped() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    model[0].weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert [g["name"] for g in groups] == ["no_decay"]
    assert all(p.requires_grad for g in groups for p in g["params"])


def test_no_trainable_parameters_is_a_clear_error() -> None:
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(TrainwellError, match="no trainable parameters"):
        param_groups(model, 0.1)
