import keras
import numpy as np
import pytest
from scipy.special import erf

from keras_mim.layers import ProjectionHead
from tests.conftest import to_numpy


def reference_head(x, kernels, biases, v, g):
    """bytedance/ibot `DINOHead.forward` in numpy: Linear (+ exact GELU between layers),
    `F.normalize`, then `weight_norm(Linear(bottleneck, K, bias=False))`, w = g v / ||v||."""
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(zip(kernels, biases)):
        h = h @ w + b
        if i < len(kernels) - 1:
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
    h = h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-12)
    weight = g * v / np.linalg.norm(v, axis=0, keepdims=True)  # one norm per prototype (column)
    return h @ weight


@pytest.mark.parametrize("num_layers", [1, 3])
def test_matches_the_official_head(rng, num_layers):
    head = ProjectionHead(12, out_dim=20, hidden_dim=10, bottleneck_dim=6, num_layers=num_layers,
                          norm_last_layer=False)
    head.build()
    # random weights everywhere (biases and a scale g != 1 included)
    for w in head.weights:
        w.assign(rng.standard_normal(w.shape).astype("float32"))
    x = rng.standard_normal((2, 5, 12)).astype("float32")
    kernels = [to_numpy(d.kernel) for d in head.mlp]
    biases = [to_numpy(d.bias) for d in head.mlp]
    expected = reference_head(x, kernels, biases, to_numpy(head.prototypes), to_numpy(head.prototype_scale))
    np.testing.assert_allclose(to_numpy(head(x)), expected, rtol=1e-4, atol=1e-5)
    assert [d.units for d in head.mlp] == [10] * (num_layers - 1) + [6]


def test_norm_last_layer_freezes_the_scale_at_one_and_scores_are_cosines(rng):
    frozen, free = ProjectionHead(8, 16, 8, 4), ProjectionHead(8, 16, 8, 4, norm_last_layer=False)
    for head in (frozen, free):
        head.build()
    assert not frozen.prototype_scale.trainable and free.prototype_scale.trainable
    np.testing.assert_array_equal(to_numpy(frozen.prototype_scale), np.ones(16))
    # official init: MLP kernels truncated normal std 0.02, zero biases
    kernel = to_numpy(frozen.mlp[0].kernel)
    assert np.abs(kernel).max() <= 0.04 + 1e-6 and 0.01 < kernel.std() < 0.03
    assert not np.any(to_numpy(frozen.mlp[0].bias))
    scores = to_numpy(frozen(rng.standard_normal((64, 8)).astype("float32")))
    assert np.abs(scores).max() <= 1.0 + 1e-5  # unit bottleneck . unit prototype


def test_keras_round_trip(rng, tmp_path):
    head = ProjectionHead(8, out_dim=16, hidden_dim=8, bottleneck_dim=4)
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, head(inputs))
    model.save(tmp_path / "head.keras")
    loaded = keras.saving.load_model(tmp_path / "head.keras")
    assert loaded.layers[-1].get_config() == head.get_config()
    x = rng.random((2, 5, 8)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(out_dim=0), ValueError, "`out_dim` must be a positive int, got 0"),
    (dict(bottleneck_dim=2.5), ValueError, "`bottleneck_dim`"),
    (dict(num_layers=0), ValueError, "`num_layers`"),
    (dict(norm_last_layer="yes"), TypeError, "`norm_last_layer` must be a bool"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ProjectionHead(8, **kwargs)
    with pytest.raises(ValueError, match="width 8, got input shape"):
        ProjectionHead(8).build((None, 9))
