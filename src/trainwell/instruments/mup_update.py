"""muP's live coordinate check: the relative size of each update, per muP role.

muP is built so that one update changes every layer's output by an amount that does not
depend on the width (Yang et al. 2022; Yang, Simon & Bernstein 2023, "A spectral condition
for feature learning": ``‖ΔW‖ ≍ ‖W‖`` in the spectral norm, both of order
sqrt(fan_out / fan_in)). The width-free quantity is therefore the update's size relative to
the weight's in the spectral norm, ‖ΔW‖₂ / ‖W‖₂. The ratio of entrywise RMS is not: a
hidden matrix's Adam update under muP has entries of order lr/m but is nearly low-rank, while
its random initial weight has entries of order 1/sqrt(m) and full rank, so RMS(ΔW)/RMS(W)
falls as 1/sqrt(m) even when muP works. Under SP with Adam the hidden ratio grows with m.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainwell.instruments.base import UPDATE, Context, Metrics, key, update_diff
from trainwell.mup.roles import spec_of

POWER_ITERATIONS = 16
"""Power iterations per spectral norm: from a fixed random start the estimate of a trained
matrix's top singular value is within a few percent after ~10; 16 for margin (each is two
matrix-vector products, negligible next to a training step at the default every = 64)."""


def spectral_norm(t: Tensor, iterations: int = POWER_ITERATIONS) -> Tensor:
    """‖t‖₂ of ``t`` as a (fan_out, rest) matrix by power iteration; the Euclidean norm of a
    vector. Deterministic (a seeded generator of its own: the global RNG is untouched)."""
    if t.ndim < 2:
        return t.detach().float().norm()
    a = t.detach().float().reshape(t.shape[0], -1)  # (out, in)
    g = torch.Generator(device=a.device).manual_seed(0)
    v = torch.randn(a.shape[1], generator=g, device=a.device)
    v = v / v.norm()
    s = a.new_zeros(())
    for _ in range(iterations):
        u = a @ v
        u = u / u.norm().clamp_min(1e-30)
        v = a.T @ u
        s = v.norm()
        v = v / s.clamp_min(1e-30)
    return s


class MupUpdateRatio:
    """Per muP role (input, hidden, output): the median over that role's tensors of
    ‖θ_{t+1} − θ_t‖₂ / ‖θ_t‖₂, matrices in the spectral norm and vectors in the Euclidean one.

    Needs: update (θ_t and θ_{t+1}); a model in muP (``model.parametrization = "mup"`` or
    ``trainwell.mup.parametrize``); under SP it reports nothing.
    Reading: under muP each role's ratio should be the same for a narrow and a wide model
    trained with the same hyperparameters: the coordinate check, on the real run. A hidden
    ratio that grows with the width means the learning rate is not scaled per role (a
    schedule or optimizer that overwrote the per-group lr). Tensors still at zero
    (zero-initialised residual branches before their first update) are left out.
    """

    name = "mup_update"
    needs = frozenset({UPDATE})
    norms = ("update",)

    def measure(self, ctx: Context) -> Metrics:
        spec = spec_of(ctx.model)
        if spec is None:
            return {}
        assert ctx.params_before is not None
        diff = update_diff(ctx)
        by_role: dict[str, list[Tensor]] = {}
        for name, d in diff.items():
            role = spec.roles.get(name)
            if role is None or role.role == "fixed":
                continue
            w = spectral_norm(ctx.params_before[name])
            ratio = torch.where(w > 0, spectral_norm(d) / w, torch.full_like(w, torch.nan))
            by_role.setdefault(role.role, []).append(ratio)  # nan: still zero, left out below
        return {key(self.name, role): torch.stack(v).nanmedian() for role, v in by_role.items()}
