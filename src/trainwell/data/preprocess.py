"""Input normalisation fitted on the TRAINING split only, then applied to every split.

Statistics from held-out data would leak it into training (the test set would shape the
inputs the model learns from) and make held-out numbers optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZCA_EPS = 0.1
"""Whitening regulariser, relative to the mean eigenvalue of the covariance (which is 1 after
standardising). 0.1 is the value Coates & Ng (2011, "An analysis of single-layer networks in
unsupervised feature learning") use on normalised pixels: it stops the many near-zero
directions (constant border pixels) from being blown up into noise."""

MIN_STD = 1e-8
"""Below this spread the data is treated as constant and left unscaled (no division by ~0)."""


@dataclass(frozen=True)
class Standardizer:
    """x -> ((x - mean) / std) [@ W]: per-feature mean, ONE global std, optional ZCA whitening.

    A global std (not one per feature) keeps the relative contrast between pixels and never
    divides by the ~0 spread of a pixel that is (almost) always blank in training, which would
    turn a rare stroke at test time into a huge outlier. ZCA (W = U diag(1/sqrt(lambda+eps)) U^T,
    Bell & Sejnowski 1997) rather than PCA whitening keeps each feature at its pixel position,
    so images stay images for convolutional models.
    """

    mean: np.ndarray
    """(D,) float64 per-feature mean of the training split."""
    std: float
    """Global standard deviation of the centred training features."""
    whitening: np.ndarray | None = None
    """(D, D) float64 symmetric ZCA matrix, or None."""

    @classmethod
    def fit(cls, x_train: np.ndarray, whiten: bool = False) -> Standardizer:
        """Statistics of ``x_train`` (N, D) only."""
        x = np.asarray(x_train, dtype=np.float64)
        mean = x.mean(axis=0)  # (D,)
        centred = x - mean  # (N, D)
        std = float(np.sqrt(np.mean(centred**2)))
        std = std if std > MIN_STD else 1.0
        w = None
        if whiten:
            z = centred / std
            cov = z.T @ z / len(z)  # (D, D)
            lam, u = np.linalg.eigh(cov)
            lam = np.clip(lam, 0.0, None)  # tiny negative eigenvalues from round-off
            eps = ZCA_EPS * max(float(lam.mean()), MIN_STD)
            w = (u / np.sqrt(lam + eps)) @ u.T  # (D, D)
        return cls(mean, std, w)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, D) float32."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        if self.whitening is not None:
            z = z @ self.whitening
        return z.astype(np.float32)
