"""muP (the maximal update parametrization, Tensor Programs V, Yang et al. 2022): tune at a
small width, train at a large one with the same hyperparameters.

``parametrize(make, width, base_width)`` puts any model in muP; the built-in models do it
with ``model.parametrization = "mup"``. The roles are plain data on the module
(``spec_of(model)``) and in the optimizer's parameter groups, never on tensors, so that
checkpoints, DDP, FSDP2 and ``torch.compile`` keep working. See docs/mup.md.
"""

from __future__ import annotations

from trainwell.mup.optim import SUPPORTED, eps_mult, lr_mult, mup_groups
from trainwell.mup.parametrize import MupReadout, parametrize
from trainwell.mup.roles import ROLES, MupSpec, ParamRole, Role, infer_roles, spec_of

__all__ = [
    "ROLES",
    "SUPPORTED",
    "MupReadout",
    "MupSpec",
    "ParamRole",
    "Role",
    "eps_mult",
    "infer_roles",
    "lr_mult",
    "mup_groups",
    "parametrize",
    "spec_of",
]
