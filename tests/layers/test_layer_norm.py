"""LayerNorm: forward and input gradient against numpy formulas, bf16, config round trip."""

import keras
import numpy as np
import pytest

from keras_mim.layers import LayerNorm
from tests.conftest import backend_grads, to_numpy


def np_forward(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def np_input_grad(x, gamma, w, eps):
    """d/dx of sum(w * LN(x)): (g - mean(g) - xhat * mean(g * xhat)) / sigma, g = w * gamma."""
    sigma = np.sqrt(x.var(-1, keepdims=True) + eps)
    xhat = (x - x.mean(-1, keepdims=True)) / sigma
    g = w * gamma
    return (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True)) / sigma


def built_layer(rng, d=8, eps=1e-6, **kwargs):
    layer = LayerNorm(epsilon=eps, **kwargs)
    layer.build((None, d))
    gamma = rng.normal(size=d).astype("float32")
    beta = rng.normal(size=d).astype("float32")
    layer.set_weights([gamma, beta])
    return layer, gamma, beta


def test_forward_and_input_gradient_match_numpy(rng):
    layer, gamma, beta = built_layer(rng, eps=1e-5)
    x = (rng.normal(size=(3, 5, 8)) * 3 + 2).astype("float32")
    w = rng.normal(size=x.shape).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(x)), np_forward(x.astype(np.float64), gamma, beta, 1e-5),
                               rtol=1e-5, atol=1e-5)
    (dx,) = backend_grads(lambda t: keras.ops.sum(keras.ops.multiply(layer(t), w)), x)
    np.testing.assert_allclose(dx, np_input_grad(x.astype(np.float64), gamma, w, 1e-5), rtol=1e-4, atol=1e-5)


def test_bfloat16_policy_keeps_float32_weights_and_statistics(rng):
    layer = LayerNorm(dtype="mixed_bfloat16")
    x = (rng.normal(size=(2, 4, 16)) * 100 + 1000).astype("float32")  # bf16 loses the offset's digits
    y = layer(keras.ops.cast(x, "bfloat16"))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert layer.gamma.dtype == "float32"
    xb = to_numpy(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32")).astype(np.float64)
    np.testing.assert_allclose(to_numpy(keras.ops.cast(y, "float32")), np_forward(xb, 1.0, 0.0, 1e-6), atol=0.05)


def test_same_weights_and_config_as_keras_layer(rng):
    layer, _, _ = built_layer(rng, d=6)
    assert [v.path.split("/")[-1] for v in layer.weights] == ["gamma", "beta"]
    clone = LayerNorm.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = rng.normal(size=(2, 6)).astype("float32")
    reference = keras.layers.LayerNormalization(epsilon=1e-6)
    reference.build((None, 6))
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(reference(x)), atol=1e-5)


def test_saved_model_round_trip(rng, tmp_path):
    inputs = keras.Input((4, 6))
    model = keras.Model(inputs, LayerNorm(center=False, name="ln")(inputs))
    path = tmp_path / "ln.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("ln"), LayerNorm) and not loaded.get_layer("ln").center
    x = rng.normal(size=(2, 4, 6)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)


@pytest.mark.parametrize("axis", [1, [1, 2]])
def test_rejects_other_axes(axis):
    with pytest.raises(ValueError, match="`axis` must be -1"):
        LayerNorm(axis=axis)
