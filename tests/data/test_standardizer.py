from __future__ import annotations

import numpy as np

from trainwell.data.preprocess import ZCA_EPS, Standardizer


def _data(seed=0, n=400, d=6):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 5


def test_uses_training_statistics_only():
    train, test = _data(0), _data(1) + 100.0  # test lives somewhere else entirely
    s = Standardizer.fit(train)
    z = s(train)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.mean(z.astype(np.float64) ** 2)), 1.0, rtol=1e-5)
    mean, std = train.mean(axis=0), np.sqrt(np.mean((train - train.mean(axis=0)) ** 2))
    np.testing.assert_allclose(s(test), (test - mean) / std, rtol=1e-5)
    assert s(test).mean() > 10  # the test shift is kept, not normalised away


def test_constant_features_are_not_divided_by_zero():
    x = np.zeros((10, 3))
    s = Standardizer.fit(x)
    assert np.all(np.isfinite(s(x + 1)))
    assert s.std == 1.0


def test_zca_whitening_matches_its_formula_and_keeps_symmetry():
    train = _data(0)
    s = Standardizer.fit(train, whiten=True)
    w = s.whitening
    assert w is not None and np.allclose(w, w.T)
    z = (train - train.mean(axis=0)) / s.std
    cov = z.T @ z / len(z)
    lam, u = np.linalg.eigh(cov)
    eps = ZCA_EPS * lam.mean()
    white = s(train).astype(np.float64)
    # the whitened covariance is U diag(lam / (lam + eps)) U^T: nearly identity, damped by eps
    np.testing.assert_allclose(
        white.T @ white / len(white), (u * (lam / (lam + eps))) @ u.T, atol=1e-4
    )
    # and it depends on the training split only
    s2 = Standardizer.fit(train, whiten=True)
    assert np.array_equal(s2.whitening, w)
