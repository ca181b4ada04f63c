import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder, list_presets
from keras_mim.masking import RandomMaskGenerator
from tests.conftest import expected_visible, to_numpy
from tests.training import digits, jit_for_backend


def official_patchify(x, p):
    n, h, w, c = x.shape
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def reference_loss(images, pred, mask, p, norm_pix):
    """The official MAE forward_loss in numpy: unbiased per-patch variance, eps 1e-6."""
    target = official_patchify(images.astype(np.float64), p)
    if norm_pix:
        target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_matches_official_formula(rng, norm_pix):
    model = MaskedAutoencoder.from_preset("mae_vit_test", norm_pix_loss=norm_pix)
    x = rng.random((3, 16, 16, 3)).astype("float32")
    noise = rng.random((3, 16)).astype("float32")
    out = model(x, noise=noise)
    loss = float(model.compute_loss(x=x, y_pred=out))
    ref = reference_loss(x, to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"]), 4, norm_pix)
    assert loss == pytest.approx(ref, rel=1e-4)


def test_losses_layers_add_join_the_loss_once_each(rng):
    # two activity regularisers of constant value (1.5 and 0.25; Keras divides an activity loss
    # by the batch size, 2): the official loss plus 0.875
    model = MaskedAutoencoder.from_preset("mae_vit_test", norm_pix_loss=True)
    model.encoder.norm.activity_regularizer = lambda y: keras.ops.sum(y) * 0.0 + 1.5
    model.decoder.norm.activity_regularizer = lambda y: keras.ops.sum(y) * 0.0 + 0.25
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x, noise=rng.random((2, 16)).astype("float32"))
    ref = reference_loss(x, to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"]), 4, True)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref + 1.75 / 2, rel=1e-4)


def test_mask_follows_noise_and_ratio(rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test", mask_ratio=0.75)
    noise = rng.random((2, 16)).astype("float32")
    mask = to_numpy(model(rng.random((2, 16, 16, 3)).astype("float32"), noise=noise)["mask"])
    for b in range(2):
        np.testing.assert_array_equal(np.flatnonzero(mask[b]), np.sort(np.argsort(noise[b])[4:]))


def test_encoder_sees_only_visible_patches(rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test")
    x = rng.random((1, 16, 16, 3)).astype("float32")
    noise = rng.random((1, 16)).astype("float32")
    out = model(x, noise=noise)
    hidden = np.flatnonzero(to_numpy(out["mask"])[0])
    y = x.copy()
    for t in hidden:  # scramble every hidden patch
        r, c = divmod(int(t), 4)
        y[0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = rng.random((4, 4, 3))
    np.testing.assert_allclose(to_numpy(model(y, noise=noise)["pred"]), to_numpy(out["pred"]), atol=1e-6)


def test_zero_ratio_scores_every_patch(rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test", mask_ratio=0.0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x)
    assert to_numpy(out["mask"]).sum() == 0
    ref = reference_loss(x, to_numpy(out["pred"]), np.ones((2, 16)), 4, True)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref, rel=1e-4)


def test_fit_on_tf_data_with_labels_ignored():
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices((digits(64), np.zeros(64))).batch(16)
    model = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=jit_for_backend())
    history = model.fit(ds, epochs=2, verbose=0).history["loss"]
    assert len(history) == 2 and np.all(np.isfinite(history))
    assert np.isfinite(model.evaluate(ds, verbose=0))


def test_predict_and_reconstruct(rng):
    model = MaskedAutoencoder.from_preset("mae_vit_test")
    x = rng.random((5, 16, 16, 3)).astype("float32")
    out = model.predict(x, batch_size=2, verbose=0)
    assert out["pred"].shape == (5, 16, 48) and out["mask"].shape == (5, 16)
    rec, pixel_mask, mask = model.reconstruct(x[:2])
    assert tuple(rec.shape) == (2, 16, 16, 3) and tuple(pixel_mask.shape) == (2, 16, 16, 1)
    # pixel mask is the token mask spread over each 4x4 patch
    pm = to_numpy(pixel_mask)[..., 0]
    m = to_numpy(mask).reshape(2, 4, 4)
    np.testing.assert_array_equal(pm, np.kron(m, np.ones((4, 4))))


def test_custom_generator_instance_and_its_ratio():
    model = MaskedAutoencoder.from_preset("mae_vit_test", mask_generator=RandomMaskGenerator(0.5, seed=1))
    assert model.mask_ratio == 0.5
    mask = to_numpy(model(np.zeros((2, 16, 16, 3), "float32"))["mask"])
    np.testing.assert_array_equal(mask.sum(1), 8)


SMALL = ["mae_vit_test", "mae_vit_nano_patch2_16", "mae_vit_micro_patch4_32", "mae_vit_tiny_patch4_32"]
LARGE = ["mae_vit_tiny_patch16", "mae_vit_small_patch16", "mae_vit_base_patch16", "mae_vit_large_patch16",
         "mae_vit_huge_patch14", "colormae_vit_base_patch16", "medmae_vit_small_patch16", "medmae_vit_base_patch16"]


@pytest.mark.one_backend  # preset plumbing (two ViT-B builds: 25 s on JAX); masks run on every backend elsewhere
def test_preset_carries_its_masking_strategy():
    model = MaskedAutoencoder.from_preset("colormae_vit_base_patch16", image_size=32)
    assert type(model.mask_generator).__name__ == "ColorNoiseMaskGenerator"
    assert model.mask_generator.color == "green" and model.mask_ratio == 0.75
    # an override still wins over the preset's choice
    assert MaskedAutoencoder.from_preset("colormae_vit_base_patch16", image_size=32,
                                         mask_generator="red").mask_generator.color == "red"


def test_every_mae_preset_is_listed():
    from keras_mim.models.presets import PRESETS

    mae = [n for n, spec in PRESETS.items() if spec["method"] == "mae"]
    assert sorted(mae) == sorted(SMALL + LARGE)
    assert set(list_presets()) == set(PRESETS)


@pytest.mark.one_backend  # the presets' shapes train; per-backend training: the method suite on mae_vit_test
@pytest.mark.parametrize("preset", SMALL[1:])  # mae_vit_test: tests/models/test_method_suite.py
def test_small_presets_train_one_step(preset):
    model = MaskedAutoencoder.from_preset(preset, seed=0)
    h, w = model.encoder.image_size
    # XLA compile of a 12-block step costs more than the step; JAX runs eagerly op by op without jit.
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=keras.backend.backend() == "jax")
    history = model.fit(np.random.rand(2, h, w, 3).astype("float32"), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
@pytest.mark.one_backend(backend="torch")  # shapes, not numerics: once per CI run, on the backend that
# builds and runs them fastest (ViT-L: build 2.3 s + forward 0.6 s on torch, 7.9 s + 5.2 s on JAX)
@pytest.mark.parametrize("preset", LARGE)
def test_large_presets_build_and_run_one_step(preset):
    model = MaskedAutoencoder.from_preset(preset, seed=0)
    out = model(np.random.rand(1, 224, 224, 3).astype("float32"))
    n = model.encoder.num_patches
    assert tuple(out["pred"].shape) == (1, n, model.encoder.patch_size[0] ** 2 * 3)
    assert float(to_numpy(out["mask"]).sum()) == n - expected_visible(n, model.mask_ratio)  # 0.9 for MedMAE


@pytest.mark.one_backend(backend="torch")  # builds ViT-B once per CI run (shapes: the fastest backend)
def test_official_sizes():
    for preset, (d, depth, heads, params) in {
        "mae_vit_base_patch16": (768, 12, 12, 85.8e6),
    }.items():
        enc = MaskedAutoencoder.from_preset(preset).encoder
        enc.build()
        assert (enc.embed_dim, enc.depth, enc.num_heads) == (d, depth, heads)
        # timm ViT-B/16 without head: 85.8M parameters, 86.4M with the fixed pos table
        assert abs(enc.count_params() - 85.8e6 - 197 * 768) / 85.8e6 < 0.01


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(mask_ratio=1.0), ValueError, r"\[0, 1\)"),
        (dict(mask_ratio=0.97), ValueError, "leaves no visible token"),
        (dict(mask_ratio="high"), TypeError, "`mask_ratio`"),
        (dict(image_size=18), ValueError, "not divisible"),
        (dict(mask_generator="chessboard"), ValueError, "Unknown `mask_generator`"),
        (dict(depht=3), TypeError, "Unknown override 'depht'"),
    ],
)
def test_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        MaskedAutoencoder.from_preset("mae_vit_test", **kw)


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown preset 'mae_vit_gigantic'.*mae_vit_base_patch16"):
        MaskedAutoencoder.from_preset("mae_vit_gigantic")


def test_bad_tf_data_fails_before_training():
    tf = pytest.importorskip("tensorflow")
    model = MaskedAutoencoder.from_preset("mae_vit_test")
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"not divisible by the patch size"):
        model.fit(tf.data.Dataset.from_tensor_slices(np.zeros((4, 18, 16, 3), "float32")).batch(2), verbose=0)


def test_any_preset_architecture_serves_any_class_but_settings_stay_with_theirs():
    from keras_mim.models.presets import preset_model_class

    model = MaskedAutoencoder.from_preset("colormae_vit_base_patch16", image_size=32, depth=1,
                                          decoder_depth=1)
    assert type(model.mask_generator).__name__ == "ColorNoiseMaskGenerator"
    assert preset_model_class("mae_vit_test") is MaskedAutoencoder
    with pytest.raises(TypeError, match="Unknown override 'decoder_width'"):
        MaskedAutoencoder.from_preset("mae_vit_test", decoder_width=3)
    with pytest.raises(ValueError, match="Unknown preset 'nope'"):
        MaskedAutoencoder.from_preset("nope")
