"""Quantities whose derivation assumes plain SGD (no momentum, no adaptive scaling).

Both come from per-sample gradients and are in no Cockpit preset. Their output keys end
in ``_sgd`` and the runner notes the assumption once: with Adam or momentum read them as
rough indications only, as their papers and Cockpit warn.
"""

from __future__ import annotations

import torch

from trainwell.instruments.base import PER_SAMPLE, Context, Metrics, key
from trainwell.instruments.persample import element_second_moment, moments

EB_EPS = 1e-5
"""Stabiliser of the per-element variance (Cockpit's value)."""

SGD_NOTE = (
    "{name}: derived for plain SGD without momentum ({paper}); with any other optimizer "
    "read inst/{name}_sgd as a rough indication only"
)


class CABS:
    """CABS batch size (Balles, Romero & Hennig 2017, "Coupling adaptive batch sizes with
    learning rates", eq. 22): the batch size that keeps SGD's gradient noise in proportion
    to the learning rate,

        B_CABS = η · tr(Σ̂) / L,   tr(Σ̂) = Σ_j [ (1/B) Σ_i g_ij² − g_j² ],

    with η the learning rate and L the mean loss of the measured samples. **SGD only.**
    Key: ``inst/cabs_sgd``.

    Needs: per_sample_grads. Reading: the suggested batch size for plain SGD at this LR;
    far above the batch in use means the steps are noise-dominated.
    """

    name = "cabs"
    needs = frozenset({PER_SAMPLE})

    def measure(self, ctx: Context) -> Metrics:
        m = moments(ctx)
        assert ctx.per_sample_losses is not None
        _note(ctx, self.name, "Balles et al. 2017")
        loss = ctx.per_sample_losses.float().mean()
        return {key("cabs_sgd"): ctx.lr * m.trace_sigma(unbiased=False) / loss}


class EarlyStopping:
    """Evidence-based early-stopping criterion (Mahsereci, Balles, Lassner & Hennig 2017,
    "Early stopping without a validation set", eq. 7):

        1 − B · mean_j [ g_j² / (σ̂_j² + 1e-5) ],   σ̂_j² = B/(B−1) · ((1/B) Σ_i g_ij² − g_j²).

    **SGD only.** Key: ``inst/early_stopping_sgd``.

    Needs: per_sample_grads. Reading: > 0 means the batch gradient is indistinguishable
    from noise around zero: stop training (without needing a validation set).
    """

    name = "early_stopping"
    needs = frozenset({PER_SAMPLE})

    def measure(self, ctx: Context) -> Metrics:
        m, second = moments(ctx), element_second_moment(ctx)
        _note(ctx, self.name, "Mahsereci et al. 2017")
        total = torch.zeros((), device=m.grad_sq.device)
        count = 0
        for name, g in m.mean.items():
            g2 = g.float().square()
            var = (second[name] - g2) * (m.n / (m.n - 1))
            total = total + (g2 / (var + EB_EPS)).sum()
            count += g.numel()
        return {key("early_stopping_sgd"): 1 - m.n * total / count}


def _note(ctx: Context, name: str, paper: str) -> None:
    ctx.notes.append(SGD_NOTE.format(name=name, paper=paper))
