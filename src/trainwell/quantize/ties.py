"""Tied weights through quantisation.

A GPT reads one (V, C) matrix twice: as the token embedding and as the LM head. torchao's
``quantize_`` swaps weights module by module, so after it the head holds an int8 tensor
and the embedding still the fp32 one (``head.weight is wte.weight`` turns False): the
file would carry both, and the two uses would no longer agree. ``retie`` points every
member of a tied group at the quantised tensor again; torchao's int8 and int4 tensors
serve an embedding lookup as well as a matmul.
"""

from __future__ import annotations

from torch import nn

Slot = tuple[str, str]
"""(module name, parameter attribute), e.g. ("lm_head", "weight")."""


def tie_groups(model: nn.Module) -> list[list[Slot]]:
    """Groups of two or more slots that hold the same Parameter object."""
    by_id: dict[int, list[Slot]] = {}
    for mname, module in model.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False, remove_duplicate=False):
            slots = by_id.setdefault(id(p), [])
            if (mname, pname) not in slots:
                slots.append((mname, pname))
    return [slots for slots in by_id.values() if len(slots) > 1]


def retie(model: nn.Module, groups: list[list[Slot]]) -> list[str]:
    """Point each group at the one quantised tensor among its slots (if any); returns
    'a.weight = b.weight' lines for what was re-tied."""
    from trainwell.quantize.methods import is_quantized

    done = []
    for slots in groups:
        params = {s: getattr(model.get_submodule(s[0]), s[1]) for s in slots}
        source = next((s for s, p in params.items() if is_quantized(p)), None)
        if source is None:
            continue
        for slot, p in params.items():
            if p is not params[source]:
                setattr(model.get_submodule(slot[0]), slot[1], params[source])
                done.append(f"{_name(slot)} = {_name(source)}")
    return done


def _name(slot: Slot) -> str:
    return f"{slot[0]}.{slot[1]}" if slot[0] else slot[1]
