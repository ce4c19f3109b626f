"""Parameter groups: which tensors get weight decay, and which are "hidden" matrices.

Weight decay shrinks weights towards zero. That regularises matrices that mix features,
but on a bias, a norm gain or an embedding row it only pulls a scale or a lookup towards
zero and hurts (nanoGPT's ``configure_optimizers``, minGPT, the OPT/LLaMA recipes: decay
2D weights only). The rule here: decay a parameter iff it has ``ndim >= 2`` and is not
the weight of an embedding. A tied LM head shares the embedding's Parameter object, so it
is the embedding and is not decayed either.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from trainwell.errors import TrainwellError

EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
"""Modules whose ``weight`` is a lookup table (never decayed, never given to Muon)."""


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for each trainable parameter, each shared tensor once.

    ``named_parameters`` already drops duplicates (a tied head appears once, under the
    name it was first registered with); the id check guards against models that hand out
    the same tensor through two unrelated modules in ways torch does not see as sharing.
    """
    seen: set[int] = set()
    out = []
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    if not out:
        raise TrainwellError(
            f"optim: the model ({type(model).__name__}) has no trainable parameters "
            "(none with requires_grad=True); there is nothing to optimise"
        )
    return out


def embedding_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the weights of every embedding module (tied heads included: same object)."""
    return {id(m.weight) for m in model.modules() if isinstance(m, EMBEDDING_TYPES)}


def output_head_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the output head's parameters: those of the LAST ``nn.Linear`` registered.

    Reference models (nanoGPT's ``lm_head``, torchvision's ``fc``/``classifier``) register
    their head last, so the last Linear in ``model.modules()`` order is the head. Muon uses
    this to keep the head on AdamW (Jordan et al. 2024: Muon is for hidden matrices only).
    """
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return {id(p) for p in last.parameters()} if last is not None else set()


def decays(p: nn.Parameter, embedding_ids: set[int]) -> bool:
    """The weight-decay rule of this module's docstring."""
    return p.ndim >= 2 and id(p) not in embedding_ids


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: ``decay`` (``weight_decay``) and ``no_decay`` (0.0).

    Each group is ``{"params": [...], "weight_decay": float, "name": str}``; empty groups
    are left out (some third-party optimizers reject them). Order is the model's
    registration order, so a saved optimizer state maps back onto the same tensors.
    """
    emb = embedding_parameter_ids(model)
    decay, no_decay = [], []
    for _, p in trainable_parameters(model):
        (decay if decays(p, emb) else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]
