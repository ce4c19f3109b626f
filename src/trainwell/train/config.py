"""The ``[train]``, ``[clip]`` and ``[ema]`` sections."""

from __future__ import annotations

from pydantic import Field

from trainwell.section import Section


class TrainConfig(Section):
    steps: int = Field(1000, ge=1)
    """Number of optimizer updates (applied steps)."""
    batch_size: int = Field(32, ge=1)
    """Samples per optimizer update, summed over all micro-batches (the global batch)."""
    accumulate: int = Field(1, ge=1)
    """Micro-batches per update. The loss is normalised by the total number of targets across micro-batches, so accumulating equals one big batch."""
    eval_every: int = Field(200, ge=0)
    """Evaluate every this many steps (and at the end); 0 = only at the end. Evaluate on a step cadence, not a time cadence (Tuning Playbook)."""
    eval_batches: int = Field(0, ge=0)
    """Cap on validation batches per evaluation (0 = the whole validation split). The same batches are used at every evaluation."""
    eval_batch_size: int = Field(0, ge=0)
    """Validation batch size (0 = same as batch_size)."""
    compile: bool = False
    """Run the model under torch.compile."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ..."""
    threads: int = Field(0, ge=0)
    """CPU threads for torch (0 = torch's default)."""


class ClipConfig(Section):
    max_norm: float = Field(1.0, ge=0.0)
    """Global-norm gradient clipping threshold (1.0 is the common default in LLM training); 0 = off. The pre-clip norm is always logged."""


class EMAConfig(Section):
    decay: float = Field(0.0, ge=0.0, lt=1.0)
    """Exponential moving average of the weights (e.g. 0.999); 0 = off. Evaluated alongside the raw weights; works well for generative models (Dieleman, MLSS 2023)."""
