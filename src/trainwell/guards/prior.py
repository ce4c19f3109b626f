"""The input guard's prior: the training data's own input scale, read before the first step.

Without it the input guard knows nothing until batches have been applied, and a run whose
bad samples come up in its first steps trains on them (``guards/inputs.py``). A map-style
dataset can be read anywhere without disturbing the run, so a few hundred of its samples
are measured up front by the step's own measure (``train/step.py``: the per-sample L2
norm of the floating-point input / sqrt(D)).
"""

from __future__ import annotations

import math

import torch

from trainwell.data.loader import BatchLoader, IterableLoader, fetch
from trainwell.guards.window import RollingWindow
from trainwell.tasks.base import input_tensor, sample_norms
from trainwell.train.rng import rng_state, set_rng_state

PRIOR_SAMPLES = 256
"""Samples measured. 256: the median and the MAD of a few hundred values are within a few
percent of the whole set's, and reading them costs milliseconds for in-memory data (a
dataset that decodes files from disk pays 256 reads once, before the first step)."""

MIN_SAMPLES = 16
"""Fewer measurable samples (a tiny dataset, most inputs all zero): no prior."""


def input_prior(loader: BatchLoader | IterableLoader, seed: int = 0) -> tuple[float, float] | None:
    """(median, MAD x 1.4826) of the log per-sample input RMS of up to ``PRIOR_SAMPLES``
    training samples, or None when there is nothing to measure: a stream (reading ahead
    would consume it), token ids or other non-float inputs.

    Median and MAD rather than mean and std: the sample may hold a few of the very samples
    the guard is there to catch (three in 4096 are in a draw of 256 one time in five), and
    one value x1e4 would inflate a standard deviation."""
    if not isinstance(loader, BatchLoader):
        return None
    data, n = loader.dataset, len(loader.dataset)
    # its own generator: the sample does not depend on, nor move, the run's random streams
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:PRIOR_SAMPLES]
    saved = rng_state()  # a dataset may draw random numbers (augmentation): restore them after
    try:
        logs: list[float] = []
        # in micro-batches of the run's size: the batches the user's collate and dataset expect
        for part in ids.split(loader.sizes[0]):
            x = input_tensor(fetch(data, part, loader.collate))
            if x is None:
                return None
            norms, d = sample_norms(x)
            rms = norms.cpu().double() / math.sqrt(d)  # (b,)
            logs += rms[rms.isfinite() & (rms > 0)].log().tolist()
    finally:
        set_rng_state(saved)
    if len(logs) < MIN_SAMPLES:
        return None
    return RollingWindow(len(logs), logs).median_spread()
