"""keras_mim.ema (weight EMAs of teachers) and keras_mim.utils.copy_model."""

import keras
import numpy as np
import pytest

from keras_mim.ema import check_same_variables, ema_update, frozen_copy, momentum_schedule
from keras_mim.utils import copy_model

from .conftest import to_numpy


def mlp(seed=0, units=3):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, name="a"),
                              keras.layers.Dense(2, activation="relu", name="b")], name="mlp")
    for i, w in enumerate(model.weights):
        w.assign(np.random.default_rng(seed + i).normal(size=w.shape).astype("float32"))
    return model


def test_copy_model_has_the_weights_in_new_variables():
    model = mlp()
    copy = copy_model(model, name="copy")
    assert copy.name == "copy" and copy is not model
    for a, b in zip(model.weights, copy.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    copy.weights[0].assign(np.zeros(copy.weights[0].shape, "float32"))
    assert np.abs(to_numpy(model.weights[0])).sum() > 0  # the original is untouched


def test_copy_model_applies_overrides():
    from keras_mim.models import ViTEncoder

    encoder = ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, name="enc")
    copy = copy_model(encoder, drop_path_rate=0.25)
    assert copy.name == "enc" and copy.get_config()["drop_path_rate"] == 0.25
    assert encoder.get_config()["drop_path_rate"] == 0.0
    for a, b in zip(encoder.weights, copy.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_frozen_copy_is_a_non_trainable_equal_model():
    model = mlp()
    teacher = frozen_copy(model)
    assert teacher.name == "mlp_ema" and not teacher.trainable and not teacher.trainable_weights
    assert frozen_copy(model, name="t").name == "t"
    for a, b in zip(model.weights, teacher.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_ema_update_matches_the_formula_step_after_step():
    student, teacher = mlp(seed=0), mlp(seed=10)
    expected = [to_numpy(w) for w in teacher.weights]
    for step, momentum in enumerate((0.9, keras.ops.convert_to_tensor(0.5))):
        for w in student.weights:
            w.assign(to_numpy(w) + step + 1.0)
        m = float(momentum)
        expected = [m * t + (1 - m) * to_numpy(s) for t, s in zip(expected, student.weights)]
        ema_update(teacher, student, momentum)
        for t, e in zip(teacher.weights, expected):
            np.testing.assert_allclose(to_numpy(t), e, rtol=1e-6, atol=1e-6)


def test_momentum_schedule_is_a_linear_ramp():
    steps = np.arange(0, 12)
    expected = np.minimum(steps / 8, 1.0) * (0.999 - 0.99) + 0.99
    np.testing.assert_allclose([float(momentum_schedule(s, 0.99, 0.999, 8)) for s in steps], expected, rtol=1e-6)
    assert float(momentum_schedule(5, 0.9, 0.99, 0)) == pytest.approx(0.99)


def test_mismatched_models_are_named_in_the_error():
    check_same_variables(mlp(), mlp(seed=3))
    with pytest.raises(ValueError, match=r"must have the same variables; got 4 teacher variables \[\(4, 3\)"):
        check_same_variables(mlp(), mlp(units=5))
