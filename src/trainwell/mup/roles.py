"""Each parameter's muP role, inferred from the model's shapes at two widths.

muP (Tensor Programs V, Yang et al. 2022) treats a parameter by which of its dimensions grow
with the width: **hidden** (fan-in and fan-out both grow: attention and MLP matrices),
**input** (only fan-out grows: input layers, embeddings, biases and norm gains), **output**
(only fan-in grows: the readout) and **fixed** (nothing grows: a readout's bias). Building the
model at two widths and comparing shapes tells which dimensions grow, for any model (the
``mup`` package's ``set_base_shapes`` does the same, but hangs the result on each tensor as
an attribute, which ``torch.save``, FSDP and ``torch.compile`` drop: mup #59, #60,
pytorch #72129). Here the roles are plain data: a :class:`MupSpec` on the module, copied
into the optimizer's parameter groups (and so into every checkpoint).

Orientation: a matrix is read as torch's ``nn.Linear`` and ``nn.Conv*`` store it,
(fan_out, fan_in, *kernel); an ``nn.Embedding``'s table (num_embeddings, dim) is a lookup,
so its fan-in is the vocabulary and its fan-out the width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from trainwell.errors import ConfigError

Role = Literal["input", "hidden", "output", "fixed"]
ROLES: tuple[Role, ...] = ("input", "hidden", "output", "fixed")

ATTR = "trainwell_mup"
"""The attribute of the model module that holds its MupSpec (never of a tensor)."""


@dataclass(frozen=True)
class ParamRole:
    """One parameter's role and how much its dimensions grew from the base width."""

    role: Role
    fan_in_mult: float = 1.0
    """fan-in at this width / fan-in at the base width (1 when the fan-in does not grow)."""
    fan_out_mult: float = 1.0
    """fan-out at this width / at the base width."""

    @property
    def width_mult(self) -> float:
        """m for this parameter: the fan-in's growth for hidden and output matrices (what
        their gradients' entries shrink by), the fan-out's for input parameters, 1 if fixed."""
        if self.role in ("hidden", "output"):
            return self.fan_in_mult
        return self.fan_out_mult if self.role == "input" else 1.0


@dataclass(frozen=True)
class MupSpec:
    """What muP needs to know about a built model: plain data, no tensors."""

    width: int
    base_width: int
    roles: dict[str, ParamRole]
    """parameter name (as ``named_parameters`` gives it, tied ones once) -> its role."""
    readouts: dict[str, float] = field(default_factory=dict)
    """module name -> the multiplier of its input (1/m): the layers that map the width to a
    fixed number of outputs, a tied LM head included."""
    init_scale: dict[str, float] = field(default_factory=dict)
    """parameter name -> the factor its initial values were multiplied by (1.0: unchanged)."""

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width

    def summary(self) -> dict[str, int]:
        """role -> number of parameter tensors."""
        return {r: sum(1 for p in self.roles.values() if p.role == r) for r in ROLES}


def spec_of(model: nn.Module) -> MupSpec | None:
    """The MupSpec of ``model`` (through torch.compile and DDP wrappers), None under SP."""
    seen = 0
    while seen < 4:  # _orig_mod (compile) and .module (DDP), in either order
        spec = getattr(model, ATTR, None)
        if isinstance(spec, MupSpec):
            return spec
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return None
        model, seen = inner, seen + 1
    return None


def _fan_dims(module: nn.Module | None, ndim: int) -> tuple[int, int] | None:
    """(fan_out dim, fan_in dim) of a parameter of ``module``, None for vectors."""
    if ndim < 2:
        return None
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return 1, 0
    return 0, 1


def _owner(model: nn.Module, name: str) -> nn.Module | None:
    path = name.rpartition(".")[0]
    return model.get_submodule(path) if path else model


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def _role(grows_out: bool, grows_in: bool) -> Role:
    if grows_out and grows_in:
        return "hidden"
    if grows_out:
        return "input"
    return "output" if grows_in else "fixed"


def infer_roles(model: nn.Module, base: nn.Module, other: nn.Module) -> dict[str, ParamRole]:
    """The role of each parameter of ``model``, from the same model built at the base width
    (``base``) and at another width (``other``). The multipliers are ``model``'s shapes over
    ``base``'s. Raises ConfigError when the three do not have the same parameters."""
    shapes, base_shapes, other_shapes = _shapes(model), _shapes(base), _shapes(other)
    problems = [
        f"parameter {n!r} exists at one width and not at another; muP needs the same "
        "parameters at every width (only their sizes may change)"
        for n in sorted(set(shapes) ^ set(base_shapes) | set(shapes) ^ set(other_shapes))
    ]
    problems += [
        f"parameter {n!r} has {len(s)} dimensions at one width and {len(base_shapes[n])} at another"
        for n, s in shapes.items() if n in base_shapes and len(s) != len(base_shapes[n])
    ]
    if problems:
        raise ConfigError(problems)
    roles = {}
    for name, shape in shapes.items():
        b, o = base_shapes[name], other_shapes[name]
        dims = _fan_dims(_owner(model, name), len(shape))
        if dims is None:  # a vector (bias, gain): input-like when it grows, else fixed
            grows = len(shape) == 1 and b[0] != o[0]
            mult = shape[0] / b[0] if grows else 1.0
            roles[name] = ParamRole("input" if grows else "fixed", 1.0, mult)
            continue
        d_out, d_in = dims
        role = _role(b[d_out] != o[d_out], b[d_in] != o[d_in])
        roles[name] = ParamRole(role, shape[d_in] / b[d_in], shape[d_out] / b[d_out])
    return roles


def find_readouts(model: nn.Module, base: nn.Module, other: nn.Module) -> dict[str, float]:
    """module name -> 1/fan-in multiplier, for each Linear whose fan-in grows with the width
    and whose fan-out does not (the readout; a head tied to an embedding too)."""
    base_mods, other_mods = dict(base.named_modules()), dict(other.named_modules())
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear) or name not in base_mods or name not in other_mods:
            continue
        b, o = base_mods[name].weight.shape, other_mods[name].weight.shape
        if b[1] != o[1] and b[0] == o[0]:
            out[name] = b[1] / m.weight.shape[1]
    return out
