"""The ridge starting point of the linear probe's head, against independent references:
scikit-learn's `Ridge` for the solution and brute-force refits for the leave-one-out step."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from keras_mim.evaluation import ridge_head
from keras_mim.evaluation.ridge_head import ridge_head_init

pytestmark = pytest.mark.backend_independent  # numpy only: no Keras op


def _data(n=90, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    features = rng.normal(size=(n, d)) * rng.uniform(0.01, 5.0, size=d) + rng.normal(size=d)
    features[np.arange(n), labels] += 2.0 * features[:, labels].std()
    return features.astype("float32"), labels


def _standardised(features, mean, variance, epsilon=1e-6):
    return (features.astype("float64") - mean) / np.sqrt(variance + epsilon)


def test_kernel_is_scikit_learns_ridge_on_the_standardised_features_times_the_scale():
    features, labels = _data()
    mean, variance = features.mean(0, dtype="float64"), features.var(0, dtype="float64")
    kernel, bias, info = ridge_head_init(features, labels, 3, mean, variance)
    z = _standardised(features, mean, variance)
    onehot = np.eye(3)[labels]
    reference = Ridge(alpha=info["l2"] * len(z), fit_intercept=True).fit(z, onehot)
    np.testing.assert_allclose(kernel, info["scale"] * reference.coef_.T, rtol=1e-4, atol=1e-5)
    # bias: log class frequencies (add-one smoothed); z is centred, so nothing else
    np.testing.assert_allclose(bias, np.log((np.bincount(labels) + 1) / (len(labels) + 3)), atol=1e-4)
    assert 0 < info["scale"] < 1000 and info["loo_accuracy"] > 0.8


def test_penalty_is_the_one_with_least_brute_force_leave_one_out_error(monkeypatch):
    monkeypatch.setattr(ridge_head, "RIDGE_GRID", (1e-3, 1e-1, 10.0))
    features, labels = _data(n=30, d=8)
    mean, variance = features.mean(0, dtype="float64"), features.var(0, dtype="float64")
    _, _, info = ridge_head_init(features, labels, 3, mean, variance)
    z = _standardised(features, mean, variance)
    targets = np.eye(3)[labels] - np.bincount(labels) / len(labels)
    errors = {}
    for l2 in ridge_head.RIDGE_GRID:
        squared = []
        for i in range(len(z)):  # refit without sample i, predict it
            keep = np.arange(len(z)) != i
            model = Ridge(alpha=l2 * len(z), fit_intercept=True).fit(z[keep], targets[keep])
            squared.append((model.predict(z[i : i + 1])[0] - targets[i]) ** 2)
        errors[l2] = np.mean(squared)
    assert info["l2"] == min(errors, key=errors.get), (info, errors)


def test_more_channels_than_samples_keeps_a_finite_scale():
    """With D >= N the training predictions are exact, and a scale fitted to them would grow
    without bound; the leave-one-out predictions are not, so the scale stays finite."""
    features, labels = _data(n=12, d=40, k=4)
    kernel, bias, info = ridge_head_init(features, labels, 5, features.mean(0), features.var(0))  # class 4 unseen
    assert kernel.shape == (40, 5) and np.isfinite(kernel).all() and np.isfinite(bias).all()
    assert info["scale"] < 900 and bias[4] < bias[:4].min()
