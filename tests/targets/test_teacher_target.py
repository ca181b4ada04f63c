"""A frozen teacher's features as a `Target`: what MAE / SimMIM regress at the hidden
tokens (EVA- and MILAN-style), scored by MSE or cosine, against numpy formulas."""

import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder, SimMIM, ViTEncoder
from keras_mim.models.eva import EVA
from keras_mim.models.milan import MILAN
from keras_mim.targets import PixelTarget, Target, TeacherFeatures, get_target
from tests.conftest import to_numpy


def small_vit(channels=3, **kw):
    # One teacher shape for every test (JAX compiles each eager op once per shape).
    return ViTEncoder(**{"image_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
                         "num_channels": channels, "name": "teacher_vit", **kw})


def patch_teacher(channels=3):
    """A functional teacher whose token t is a Dense of patch t: a conv with kernel = stride = 4."""
    inputs = keras.Input((16, 16, channels))
    return keras.Model(inputs, keras.layers.Conv2D(8, 4, strides=4, name="patchify")(inputs), name="patch_teacher")


def official_patchify(x, p=4):
    n, h, w, c = x.shape
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def np_layer_norm(y, eps=1e-5):
    return (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + eps)


def np_mse(pred, target):
    return ((pred - target) ** 2).mean(-1)


def np_cosine(pred, target):
    """EVA's `-nn.CosineSimilarity(dim=-1)` per token, plus one."""
    dot = (pred * target).sum(-1)
    return 1.0 - dot / np.maximum(np.linalg.norm(pred, axis=-1) * np.linalg.norm(target, axis=-1), 1e-8)


def hidden_mean(per_token, mask):
    return (per_token * mask).sum() / mask.sum()


def vit_target(vit, x, block=-1):
    """The teacher ViT's block output (before its final norm), [CLS] dropped, standardised per token."""
    _, (h,) = vit.forward_features(x, [block])
    return np_layer_norm(to_numpy(h).astype(np.float64))[:, 1:]


def test_one_layer_is_a_target(rng):
    vit = small_vit()
    teacher = TeacherFeatures(vit, layers=[0], loss="cosine")
    assert isinstance(teacher, Target) and get_target(teacher) is teacher
    clone = get_target(keras.saving.serialize_keras_object(teacher))
    assert isinstance(clone, TeacherFeatures) and clone.loss == "cosine" and clone.feature_layers == [0]
    with pytest.raises(ValueError, match="not known yet: call `check_compatible"):
        teacher.output_dim(4, 3)
    assert teacher.check_compatible((16, 16, 3), 16) == [24] and teacher.output_dim(4, 3) == 24
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = to_numpy(teacher(x, patch_size=4))
    assert out.shape == (2, 16, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out, vit_target(vit, x, block=0), atol=1e-4)
    pred, target = rng.normal(size=(2, 16, 24)), rng.normal(size=(2, 16, 24))
    np.testing.assert_allclose(to_numpy(teacher.loss_per_token(pred, target)), np_cosine(pred, target), atol=1e-5)
    mse = to_numpy(PixelTarget().loss_per_token(pred, target))  # the default (pixels, HOG, ...): unchanged
    np.testing.assert_allclose(mse, np_mse(pred, target), atol=1e-5)


def test_mae_regresses_a_functional_teacher_with_mse_at_hidden_tokens(rng):
    teacher_model = patch_teacher()
    target = TeacherFeatures(teacher_model, normalize=None, loss="mse")
    model = MaskedAutoencoder.from_preset("mae_vit_test", target=target, seed=0)
    assert model.decoder.output_dim == 8  # the teacher's width
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    mask = np.zeros((2, 16))
    np.put_along_axis(mask, np.argsort(noise, 1)[:, 4:], 1.0, axis=1)  # keep int(16 * 0.25) = 4 lowest
    np.testing.assert_array_equal(to_numpy(out["mask"]), mask)
    kernel, bias = (to_numpy(w).astype(np.float64) for w in teacher_model.get_layer("patchify").weights)
    features = official_patchify(x.astype(np.float64)) @ kernel.reshape(48, 8) + bias  # (B, N, 8), row-major
    expected = hidden_mean(np_mse(to_numpy(out["pred"]), features), mask)
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-4)


def test_eva_is_simmim_with_cosine_to_the_teacher_at_hidden_tokens(rng):
    vit = small_vit()
    model = EVA.from_preset("eva_vit_test", teacher=vit, seed=0, num_channels=3)
    assert isinstance(model, SimMIM) and model.teacher is model.target and model.teacher.loss == "cosine"
    assert type(model.mask_generator).__name__ == "BlockMaskGenerator" and model.mask_ratio == 0.4
    assert model.teacher.feature_layers == [1] and model.decoder.units == 24
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x)
    mask = to_numpy(out["mask"])
    assert mask.sum(1).tolist() == [16 - int(16 * 0.6)] * 2
    expected = hidden_mean(np_cosine(to_numpy(out["pred"]).astype(np.float64), vit_target(vit, x)), mask)
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-4)


def test_milan_is_mae_with_teacher_features_and_attention_masks(rng):
    vit = small_vit()
    model = MILAN.from_preset("milan_vit_test", teacher=vit, seed=0, num_channels=3, loss="mse")
    assert isinstance(model, MaskedAutoencoder) and model.teacher.loss == "mse"
    assert model.mask_ratio == 0.75 and model.mask_generator.sample == "visible"
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)  # noise fixes the mask, whatever the teacher's attention
    mask = np.zeros((2, 16))
    np.put_along_axis(mask, np.argsort(noise, 1)[:, 4:], 1.0, axis=1)
    np.testing.assert_array_equal(to_numpy(out["mask"]), mask)
    expected = hidden_mean(np_mse(to_numpy(out["pred"]).astype(np.float64), vit_target(vit, x)), mask)
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-4)


@pytest.mark.parametrize("cls,preset", [(EVA, "eva_vit_test"), (MILAN, "milan_vit_test")])
def test_the_teacher_stays_frozen_when_the_model_is_made_trainable(cls, preset):
    """`model.trainable = True` (e.g. after a frozen phase) leaves the teacher out of the
    trainable weights; that a compiled fit never moves it is the method suite's check
    (tests/models/test_method_suite.py, every teacher method)."""
    model = cls.from_preset(preset, teacher=small_vit(channels=1), seed=0, num_channels=1)
    model.trainable = True
    teacher_ids = {id(v) for v in model.teacher.weights}
    assert teacher_ids and not teacher_ids & {id(v) for v in model.trainable_weights}
    assert {id(v) for v in model.encoder.trainable_weights} <= {id(v) for v in model.trainable_weights}


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: EVA.from_preset("eva_vit_test", teacher=small_vit(patch_size=2)), ValueError,
         r"gives 64 patch tokens.*student has 16 patches"),
        (lambda: MILAN.from_preset("milan_vit_test", teacher=TeacherFeatures(small_vit(), feature_dims=32)),
         ValueError, r"`feature_dims`=\[32\] does not match.*\[24\]"),
        (lambda: EVA.from_preset("eva_vit_test", teacher=small_vit(), teacher_layers=[0, 1]), ValueError,
         "regresses ONE teacher layer"),
        (lambda: MILAN.from_preset("milan_vit_test", teacher=TeacherFeatures(small_vit()), loss="cosine"),
         ValueError, r"`loss`='cosine' but the TeacherFeatures `teacher` has loss='mse'"),
        (lambda: EVA.from_preset("eva_vit_test", teacher=small_vit(), loss="l1"), ValueError,
         r"`loss` must be one of \['cosine', 'mse'\], got 'l1'"),
        (lambda: EVA.from_preset("eva_vit_test"), TypeError, "A `teacher` is required"),
        (lambda: MaskedAutoencoder.from_preset("mae_vit_test", target=TeacherFeatures(patch_teacher(), loss="mse"),
                                               num_channels=1), ValueError, r"cannot take images|takes inputs"),
    ],
)
def test_a_teacher_that_does_not_fit_fails_at_construction(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_the_student_cannot_be_its_own_teacher():
    encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mask_token=True)
    with pytest.raises(ValueError, match="different model from the student"):
        EVA(encoder, teacher=encoder)
    with pytest.raises(ValueError, match="different model from the student"):
        SimMIM(encoder, target=TeacherFeatures(encoder), mask_generator="random")
