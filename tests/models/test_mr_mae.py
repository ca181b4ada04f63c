import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder, ViTEncoder
from keras_mim.masking import GuidedMaskGenerator
from keras_mim.models.mr_mae import MRMAE
from keras_mim.models.presets import preset_model_class
from tests.conftest import to_numpy
from tests.training import assert_roundtrip


def small_vit(channels=3, **kw):
    # One teacher shape for every test (JAX compiles each eager op once per shape).
    return ViTEncoder(**{"image_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
                         "num_channels": channels, "name": "teacher_vit", **kw})


def patch_teacher():
    """A per-patch functional teacher: each token sees only its own patch."""
    inputs = keras.Input((16, 16, 3))
    grid = keras.layers.Conv2D(8, 4, strides=4, name="patchify")(inputs)  # (B, 4, 4, 8)
    return keras.Model(inputs, keras.layers.Dense(12, name="mlp")(grid), name="patch_teacher")


def official_patchify(x, p):
    n, h, w, c = x.shape
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def pixel_loss(images, pred, mask, p=4):
    """MAE's loss: per-patch normalised pixels (unbiased variance, eps 1e-6), MSE on hidden patches."""
    t = official_patchify(images.astype(np.float64), p)
    t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    per_patch = ((pred - t) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def mimic_loss(latent, teacher_tokens, ids_keep, kernel, bias):
    """MSE between the projected visible encoder tokens and the LayerNorm-ed teacher
    features at the same positions. latent (B, 1 + K, D); teacher_tokens (B, 1 + N, Dt)."""
    pred = latent[:, 1:] @ kernel + bias
    y = teacher_tokens[:, 1:]
    y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
    target = np.stack([y[b][ids_keep[b]] for b in range(len(ids_keep))])
    return ((pred - target) ** 2).mean()


def scramble_hidden(x, mask, rng):
    y = x.copy()
    for b, t in zip(*np.nonzero(mask)):
        r, c = divmod(int(t), 4)
        y[b, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = rng.random((4, 4, 3))
    return y


def test_is_an_mae_with_a_teacher():
    model = MRMAE.from_preset("mrmae_vit_test", teacher=small_vit())
    assert isinstance(model, MaskedAutoencoder)
    assert preset_model_class("mrmae_vit_test") is MRMAE and preset_model_class("mrmae_vit_base_patch16") is MRMAE
    assert model.teacher.feature_layers == [1] and model.teacher_dims == [24] and model.mimic_weight == 1.0
    assert model.decoder.decoder_dim == 32 and model.mask_ratio == 0.75
    teacher_ids = {id(v) for v in model.teacher.weights}
    assert not teacher_ids & {id(v) for v in model.trainable_weights}


def test_total_loss_is_pixel_plus_weighted_mimic(rng):
    teacher = small_vit()
    model = MRMAE.from_preset("mrmae_vit_test", teacher=teacher, mimic_weight=0.5)
    head = model.mimic_heads[0]
    head.bias.assign(rng.normal(size=(24,)).astype("float32"))
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    ids_keep = np.argsort(noise, axis=1)[:, :4]
    np.testing.assert_array_equal(to_numpy(out["ids_keep"]), ids_keep)
    latent = to_numpy(model.encoder(x, ids_keep=ids_keep)).astype(np.float64)
    _, (teach,) = teacher.forward_features(x, [1])
    pixel = pixel_loss(x, to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"]))
    mimic = mimic_loss(latent, to_numpy(teach).astype(np.float64), ids_keep,
                       to_numpy(head.kernel).astype(np.float64), to_numpy(head.bias))
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(pixel + 0.5 * mimic, rel=1e-4)
    assert float(model.forward_mimic_loss(x, out["mimic"], out["ids_keep"])) == pytest.approx(mimic, rel=1e-4)


def test_mimic_loss_only_touches_visible_tokens(rng):
    model = MRMAE.from_preset("mrmae_vit_test", teacher=patch_teacher())
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    y = scramble_hidden(x, to_numpy(out["mask"]), rng)
    out_y = model(y, noise=noise)
    mimic_x = float(model.forward_mimic_loss(x, out["mimic"], out["ids_keep"]))
    mimic_y = float(model.forward_mimic_loss(y, out_y["mimic"], out_y["ids_keep"]))
    assert mimic_y == pytest.approx(mimic_x, rel=1e-5)
    np.testing.assert_allclose(to_numpy(out_y["mimic"][0]), to_numpy(out["mimic"][0]), atol=1e-5)
    # while the pixel term, scored on the hidden patches, does change
    pixel_x = float(MaskedAutoencoder.compute_loss(model, x=x, y_pred=out))
    pixel_y = float(MaskedAutoencoder.compute_loss(model, x=y, y_pred=out_y))
    assert abs(pixel_y - pixel_x) > 1e-3


def test_guided_masks_follow_teacher_attention(rng):
    teacher = small_vit()
    gen, twin = (GuidedMaskGenerator(0.75, seed=3, sample="visible") for _ in range(2))
    model = MRMAE.from_preset("mrmae_vit_test", teacher=teacher, mask_generator=gen)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    expected = twin(x, grid_shape=(4, 4), importance=teacher.cls_attention(x))
    np.testing.assert_array_equal(to_numpy(model(x)["ids_keep"]), to_numpy(expected["ids_keep"]))


@pytest.mark.parametrize("make_teacher", [small_vit, patch_teacher])
def test_keras_roundtrip_with_teacher_inside(make_teacher, tmp_path, rng):
    model = MRMAE.from_preset("mrmae_vit_test", teacher=make_teacher(), mimic_weight=0.3)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs={"noise": noise}, keys=["pred", "mask", "ids_keep"])
    np.testing.assert_allclose(to_numpy(model(x, noise=noise)["mimic"][0]),
                               to_numpy(loaded(x, noise=noise)["mimic"][0]), atol=1e-6)
    assert loaded.mimic_weight == 0.3 and len(loaded.trainable_weights) == len(model.trainable_weights)


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(teacher=None), TypeError, "A `teacher` is required"),
        (dict(teacher=np.zeros(3)), TypeError, "must be a Keras model.*got ndarray"),
        (dict(teacher=small_vit(patch_size=8)), ValueError, r"gives 4 patch tokens.*student has 16 patches"),
        (dict(teacher=patch_teacher(), teacher_layers=["nope"]), ValueError, "Unknown teacher layer 'nope'"),
        (dict(teacher=small_vit(), mimic_weight=-1.0), ValueError, r"`mimic_weight` must be a float >= 0"),
        (dict(teacher=small_vit(), mask_ratio=1.0), ValueError, r"\[0, 1\)"),
    ],
)
def test_bad_arguments_fail_at_construction(kw, error, match):
    with pytest.raises(error, match=match):
        MRMAE.from_preset("mrmae_vit_test", **kw)
