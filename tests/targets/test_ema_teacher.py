import keras
import numpy as np
import pytest

from keras_mim import ViTEncoder
from keras_mim.targets.ema_teacher import EMATeacher
from tests.conftest import to_numpy


def encoder(**kw):
    args = dict(image_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, mask_token=True)
    return ViTEncoder(**{**args, **kw})


def np_standardize(x, axis, eps=1e-5):
    return (x - x.mean(axis, keepdims=True)) / np.sqrt(x.var(axis, keepdims=True) + eps)


def reference_target(teacher, x, top_k, layer_norm, final_layer_norm):
    """data2vec's make_targets in numpy (float64) on the teacher's block outputs."""
    depth = teacher.encoder.depth
    _, blocks = teacher.encoder.forward_features(x, list(range(depth - top_k, depth)))
    layers = []
    for b in blocks:
        b = to_numpy(b).astype(np.float64)[:, 1:]  # drop cls -> (B, N, D)
        if layer_norm == "instance":  # F.instance_norm on (B, D, N): each feature over tokens
            b = np_standardize(b, 1)
        elif layer_norm == "layer":  # F.layer_norm over features
            b = np_standardize(b, -1)
        layers.append(b)
    y = sum(layers) / len(layers)
    return np_standardize(y, -1) if final_layer_norm else y


def perturb(model, rng, scale=0.1):
    for v in model.weights:
        v.assign(to_numpy(v) + scale * rng.standard_normal(v.shape).astype("float32"))


@pytest.mark.parametrize(
    "top_k,layer_norm,final",
    [(2, "instance", True), (3, "layer", False), (1, None, True), (3, "instance", False)],
)
def test_target_is_mean_of_normalised_top_blocks(rng, top_k, layer_norm, final):
    teacher = EMATeacher(encoder(), top_k=top_k, layer_norm=layer_norm, final_layer_norm=final)
    perturb(teacher.encoder, rng)  # not a fresh init: LayerNorm gains, biases all non-trivial
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = to_numpy(teacher(x))
    assert out.shape == (2, 16, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_target(teacher, x, top_k, layer_norm, final), rtol=1e-4, atol=5e-5)
    assert teacher.layers_used == list(range(3 - top_k, 3))


def test_copy_is_frozen_and_update_is_exact(rng):
    student = encoder()
    teacher = EMATeacher(student, name="teacher")
    assert teacher.encoder is not student and teacher.top_k == 3  # min(8, depth)
    for t, s in zip(teacher.encoder.weights, student.weights):
        np.testing.assert_array_equal(to_numpy(t), to_numpy(s))
    assert teacher.trainable_weights == [] and student.trainable
    teacher.trainable = True  # stays frozen
    assert not teacher.trainable and teacher.trainable_weights == []
    perturb(student, rng)
    t0 = [to_numpy(v) for v in teacher.encoder.weights]
    s0 = [to_numpy(v) for v in student.weights]
    teacher.update(student, momentum=0.75)
    for v, t, s in zip(teacher.encoder.weights, t0, s0):
        np.testing.assert_allclose(to_numpy(v), 0.75 * t + 0.25 * s, atol=1e-6)
    assert int(teacher.num_updates) == 1


def test_default_update_follows_the_schedule(rng):
    student = encoder(depth=1)
    teacher = EMATeacher(student, momentum=0.5, final_momentum=0.9, momentum_steps=4)
    np.testing.assert_allclose([float(teacher.momentum_at(i)) for i in (0, 2, 4, 9)], [0.5, 0.7, 0.9, 0.9], atol=1e-7)
    perturb(student, rng)
    gap0 = [to_numpy(t) - to_numpy(s) for t, s in zip(teacher.encoder.weights, student.weights)]
    for _ in range(5):
        teacher.update(student)  # momentum 0.5, 0.6, 0.7, 0.8, 0.9
    shrink = 0.5 * 0.6 * 0.7 * 0.8 * 0.9
    for t, s, g in zip(teacher.encoder.weights, student.weights, gap0):
        np.testing.assert_allclose(to_numpy(t) - to_numpy(s), shrink * g, atol=1e-6)
    assert int(teacher.num_updates) == 5


def test_config_rebuilds_the_teacher_encoder():
    teacher = EMATeacher(encoder(embed_dim=16, depth=2), top_k=1, layer_norm="layer", momentum=0.99,
                         final_momentum=0.999, momentum_steps=10, name="teacher")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(teacher))
    assert isinstance(clone, EMATeacher) and clone.get_config() == teacher.get_config()
    assert clone.encoder.embed_dim == 16 and not clone.encoder.trainable and clone.trainable_weights == []
    assert "num_updates" in [v.name for v in clone.weights]


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(top_k=4), ValueError, r"`top_k` must be an int in \[1, depth=3\].*got 4"),
        (dict(top_k=0), ValueError, "`top_k`"),
        (dict(momentum=1.5), ValueError, r"`momentum` must be a float in \[0, 1\], got 1.5"),
        (dict(final_momentum=-0.1), ValueError, r"`final_momentum` must be a float in \[0, 1\]"),
        (dict(momentum_steps=-1), ValueError, "`momentum_steps` must be an int >= 0"),
        (dict(layer_norm="batch"), ValueError, "`layer_norm` must be one of"),
        (dict(epsilon=0), ValueError, "`epsilon` must be a float > 0"),
    ],
)
def test_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        EMATeacher(encoder(), **kw)


def test_bad_encoder_and_mismatched_student():
    with pytest.raises(TypeError, match="`encoder` must be an encoder model"):
        EMATeacher(keras.layers.Dense(3))
    teacher = EMATeacher(encoder())
    with pytest.raises(ValueError, match="same variables"):
        teacher.update(encoder(embed_dim=16), momentum=0.9)
