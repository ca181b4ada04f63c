import json

import keras
import numpy as np
import pytest

from keras_mim.masking import RandomMaskGenerator
from keras_mim.models.siamese_mae import SiameseMAE
from keras_mim.models.vit_encoder import ViTEncoder
from tests.conftest import to_numpy
from tests.training import digits, fit_history


# Compiling costs more than the few steps these tests take, except on JAX where eager is slower.
JIT_IF_JAX = keras.backend.backend() == "jax"


def views(rng, b=2, size=16, c=3):  # one shape for the eager tests: JAX compiles per shape
    return {"reference": rng.random((b, size, size, c)).astype("float32"),
            "target": rng.random((b, size, size, c)).astype("float32")}


def scramble(images, mask, rng, p=4, grid_w=4):
    """A copy of `images` with the patches where `mask` (B, N) is 1 replaced by noise."""
    out = images.copy()
    for b, t in zip(*np.nonzero(mask)):
        r, c = divmod(int(t), grid_w)
        out[b, p * r : p * r + p, p * c : p * c + p] = rng.random((p, p, images.shape[-1]))
    return out


def reference_loss(target_view, pred, mask, p, norm_pix):
    """The official MAE forward_loss (used by SiamMAE / CropMAE) on the target view, in numpy."""
    n, h, w, c = target_view.shape
    t = target_view.astype(np.float64).reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    t = t.reshape(n, -1, p * p * c)
    if norm_pix:
        t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    per_patch = ((pred - t) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


# ---------------------------------------------------------------- the defining properties
def test_reference_is_unmasked_and_target_masked(rng):
    model = SiameseMAE.from_preset("cropmae_vit_test", seed=0)
    x = views(rng)
    ref_latent, tgt_latent, masking = model.forward_encoder(x["reference"], x["target"])
    assert tuple(ref_latent.shape) == (2, 1 + 16, 32)  # cls + all N tokens reach the decoder
    assert tuple(tgt_latent.shape) == (2, 1 + 4, 32)  # cls + the 4 visible of 16 (ratio 0.75)
    assert to_numpy(masking["mask"]).sum(1).tolist() == [12, 12]


def test_hidden_target_patches_do_not_matter_but_the_whole_reference_does(rng):
    model = SiameseMAE.from_preset("cropmae_vit_test", seed=0)
    x = views(rng)
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    pred, mask = to_numpy(out["pred"]), to_numpy(out["mask"])
    moved = {"reference": x["reference"], "target": scramble(x["target"], mask, rng)}
    np.testing.assert_allclose(to_numpy(model(moved, noise=noise)["pred"]), pred, atol=1e-5)
    # one reference patch at a place hidden in the target changes the prediction: no mask there
    one = np.zeros_like(mask)
    one[0, np.flatnonzero(mask[0])[0]] = 1
    moved = {"reference": scramble(x["reference"], one, rng), "target": x["target"]}
    changed = np.abs(to_numpy(model(moved, noise=noise)["pred"]) - pred).max(axis=(1, 2))
    assert changed[0] > 1e-3 and changed[1] < 1e-6  # only the sample whose reference changed
    # and so does a different reference view altogether
    other = {"reference": rng.random(x["reference"].shape).astype("float32"), "target": x["target"]}
    assert np.abs(to_numpy(model(other, noise=noise)["pred"]) - pred).max() > 1e-3


def test_cropmae_ratio_leaves_two_of_196_patches_visible():
    assert RandomMaskGenerator(0.985).num_visible((14, 14)) == 2
    assert RandomMaskGenerator(0.95).num_visible((14, 14)) == 9  # SiamMAE
    # the ViT-S/16 preset at 224 px, shrunk in width and depth to stay fast
    model = SiameseMAE.from_preset("cropmae_vit_small_patch16", embed_dim=8, depth=1, num_heads=1,
                                   decoder_dim=8, decoder_depth=1, decoder_num_heads=1, seed=0)
    assert model.mask_ratio == 0.985 and model.encoder.num_patches == 196
    masking = model.random_masking(np.zeros((3, 224, 224, 3), "float32"))  # the model's own masking step
    assert tuple(masking["ids_keep"].shape) == (3, 2)
    assert to_numpy(masking["mask"]).sum(1).tolist() == [194, 194, 194]


def test_presets_are_the_official_configurations():
    small = dict(embed_dim=8, depth=1, num_heads=1)  # the encoders are covered elsewhere
    for preset, ratio in (("cropmae_vit_small_patch16", 0.985), ("siammae_vit_small_patch16", 0.95)):
        from keras_mim.models.presets import PRESETS

        assert PRESETS[preset]["encoder"] == dict(image_size=224, patch_size=16, embed_dim=384, depth=12,
                                                   num_heads=6)
        dec = SiameseMAE.from_preset(preset, **small).decoder
        assert (dec.decoder_dim, dec.depth, dec.num_heads, dec.mlp_ratio) == (256, 4, 8, 8.0)
        assert (dec.dropout, dec.norm_first) == (0.1, False)
        assert SiameseMAE.from_preset(preset, **small).mask_ratio == ratio


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_matches_official_formula(rng, norm_pix):
    model = SiameseMAE.from_preset("cropmae_vit_test", norm_pix_loss=norm_pix)
    x = views(rng)
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    loss = model.compute_loss(x=x, y_pred=out)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    ref = reference_loss(x["target"], to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"]), 4, norm_pix)
    assert float(loss) == pytest.approx(ref, rel=1e-4)


def test_mask_follows_noise(rng):
    model = SiameseMAE.from_preset("siammae_vit_test")
    noise = rng.random((2, 16)).astype("float32")
    mask = to_numpy(model(views(rng), noise=noise)["mask"])
    for b in range(2):
        np.testing.assert_array_equal(np.flatnonzero(mask[b]), np.sort(np.argsort(noise[b])[4:]))


# ---------------------------------------------------------------- training and saving
def digit_pairs(n=256):
    """Reference: a digit; target: the same digit shifted right by 2 pixels (wrapping)."""
    x = digits(n)
    return {"reference": x, "target": np.roll(x, 2, axis=2)}


@pytest.mark.slow
@pytest.mark.one_backend(backend="torch")  # a study of the method (fit on every backend: the suite); torch 14 s, JAX 27 s, TF 106 s
def test_learns_to_read_the_reference_view():
    """Trained on pairs of identical views (the official `SameViews` ablation), the decoder
    learns to fetch the hidden patches from the reference: a mismatched reference then
    costs a clearly higher loss. (Takes ~300 steps to emerge; 5 epochs are not enough.)"""
    keras.utils.set_random_seed(0)
    x = digits(256)
    model = SiameseMAE.from_preset("cropmae_vit_test", num_channels=1, norm_pix_loss=False, seed=0)
    fit_history(model, {"reference": x, "target": x}, epochs=40)
    noise = np.random.default_rng(0).random((256, 16)).astype("float32")

    def loss(reference):
        views = {"reference": reference, "target": x}
        return float(model.compute_loss(x=views, y_pred=model(views, noise=noise, training=False)))

    right, wrong = loss(x), loss(np.roll(x, 1, axis=0))  # another digit as reference
    assert right < 0.8 * wrong, (right, wrong)


def test_predict_and_reconstruct(rng):
    model = SiameseMAE.from_preset("cropmae_vit_test", norm_pix_loss=False)
    x = views(rng, b=5)
    out = model.predict(x, batch_size=2, verbose=0)
    assert out["pred"].shape == (5, 16, 48) and out["mask"].shape == (5, 16)
    small = {k: v[:2] for k, v in x.items()}
    noise = rng.random((2, 16)).astype("float32")
    rec, pixel_mask, mask = model.reconstruct(small, noise=noise)
    assert tuple(rec.shape) == (2, 16, 16, 3)
    expected = np.kron(to_numpy(mask).reshape(2, 4, 4), np.ones((4, 4)))  # each token over its 4x4 patch
    np.testing.assert_array_equal(to_numpy(pixel_mask)[..., 0], expected)
    # raw pixels: the reconstruction is the prediction, unpatchified
    pred = to_numpy(model(small, noise=noise)["pred"]).reshape(2, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5)
    np.testing.assert_allclose(to_numpy(rec), pred.reshape(2, 16, 16, 3), atol=1e-6)


def test_roundtrip_with_dict_inputs(tmp_path, rng):
    model = SiameseMAE.from_preset("cropmae_vit_test", seed=1, norm_pix_loss=False)
    x = views(rng)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded) is SiameseMAE
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(model.get_config()))
    noise = rng.random((2, 16)).astype("float32")
    a, b = model(x, noise=noise), loaded(x, noise=noise)
    for key in ("pred", "mask", "ids_restore"):
        np.testing.assert_allclose(to_numpy(a[key]), to_numpy(b[key]), atol=1e-6, err_msg=key)
    assert float(model.compute_loss(x=x, y_pred=a)) == pytest.approx(float(loaded.compute_loss(x=x, y_pred=b)))
    assert not loaded.target.normalize and loaded.decoder.dropout == 0.1


def test_decoder_argument_forms():
    enc = ViTEncoder(16, 4, 3, 32, 1, 2)
    model = SiameseMAE(enc, decoder={"decoder_dim": 16, "depth": 1, "num_heads": 2, "norm_first": True},
                       mask_ratio=0.75)
    assert model.decoder.norm_first and model.decoder.decoder_dim == 16
    default = SiameseMAE(ViTEncoder(16, 4, 3, 32, 1, 2), mask_ratio=0.75).decoder
    assert (default.decoder_dim, default.depth, default.num_heads) == (256, 4, 8)
    with pytest.raises(ValueError, match=r"`mask_ratio`=0.985 leaves no visible token out of 16"):
        SiameseMAE(ViTEncoder(16, 4, 3, 32, 1, 2))  # the CropMAE default needs a larger grid


# ---------------------------------------------------------------- bad input
def test_bad_views_fail_before_training_then_tf_data_of_dicts_trains():
    tf = pytest.importorskip("tensorflow")
    model = SiameseMAE.from_preset("cropmae_vit_test", num_channels=1, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=JIT_IF_JAX)
    before = [to_numpy(w) for w in model.weights]
    bad = {"reference": np.zeros((4, 16, 16, 1), "float32"), "target": np.zeros((4, 8, 8, 1), "float32")}
    match = r"`x\['reference'\]` is \(4, 16, 16, 1\) but `x\['target'\]` is \(4, 8, 8, 1\)"
    with pytest.raises(ValueError, match=match):
        model.fit(bad, verbose=0)
    with pytest.raises(ValueError, match=r"is \(None, 16, 16, 1\) but `x\['target'\]` is \(None, 8, 8, 1\)"):
        model.fit(tf.data.Dataset.from_tensor_slices(bad).batch(2), verbose=0)
    with pytest.raises(ValueError, match=r"views of size \(8, 8\) but this model pretrains on \(16, 16\)"):
        model.predict({"reference": bad["target"], "target": bad["target"]}, verbose=0)
    with pytest.raises(ValueError, match="same shape"):
        model({"reference": bad["reference"], "target": bad["target"]})
    assert all(np.array_equal(a, to_numpy(b)) for a, b in zip(before, model.weights))
    # the model is intact and trains on a tf.data dataset of view dicts
    pairs = digit_pairs(64)
    history = model.fit(tf.data.Dataset.from_tensor_slices(pairs).batch(32), epochs=2, verbose=0).history["loss"]
    assert len(history) == 2 and np.all(np.isfinite(history))
    labelled = tf.data.Dataset.from_tensor_slices((pairs, np.zeros(64))).batch(32)  # labels ignored
    assert np.isfinite(model.evaluate(labelled, verbose=0))


@pytest.mark.parametrize("x,error,match", [
    (np.zeros((4, 16, 16, 3), "float32"), TypeError, r"`x` must be a dict \{'reference'.*got ndarray"),
    ({"target": np.zeros((4, 16, 16, 3), "float32")}, ValueError, r"exactly the keys.*\(missing reference\)"),
    ({"reference": np.zeros((4, 16, 16, 3), "float32"), "target": np.zeros((4, 16, 16, 3), "float32"),
      "frame": np.zeros((4, 16, 16, 3), "float32")}, ValueError, r"exactly the keys \['reference', 'target'\]"),
    ({"reference": np.zeros((4, 16, 16, 3), "uint8"), "target": np.zeros((4, 16, 16, 3), "float32")},
     TypeError, r"`x\['reference'\]` must be a float tensor"),
    ({"reference": np.zeros((4, 16, 16, 1), "float32"), "target": np.zeros((4, 16, 16, 1), "float32")},
     ValueError, r"`x\['reference'\]` has 1 channels"),
])
def test_bad_inputs(x, error, match):
    model = SiameseMAE.from_preset("cropmae_vit_test")
    model.compile(optimizer="adam")
    with pytest.raises(error, match=match):
        model.fit(x, verbose=0)


@pytest.mark.parametrize("kw,error,match", [
    (dict(mask_ratio=0.97), ValueError, "leaves no visible token out of 16"),
    (dict(mask_ratio=0.0), ValueError, "hides none of the 16 target patches"),
    (dict(mask_ratio=1.0), ValueError, r"\[0, 1\)"),
    (dict(decoder_depth=0), ValueError, "`depth` must be a positive int"),
    (dict(decoder_width=3), TypeError, "Unknown override 'decoder_width'"),
])
def test_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        SiameseMAE.from_preset("cropmae_vit_test", **kw)


def test_bad_encoder_and_decoder():
    from keras_mim.models.cross_attention_decoder import CrossAttentionDecoder
    from keras_mim.models.mae_decoder import MAEDecoder

    enc = ViTEncoder(16, 4, 3, 32, 1, 2)
    with pytest.raises(TypeError, match="`encoder` must be an encoder model"):
        SiameseMAE("vit")
    with pytest.raises(TypeError, match="`decoder` must be a CrossAttentionDecoder.*got MAEDecoder"):
        SiameseMAE(enc, decoder=MAEDecoder((4, 4), 48, 16, 1, 2), mask_ratio=0.75)
    with pytest.raises(ValueError, match=r"does not match the encoder.*grid \(4, 4\), output_dim 48"):
        SiameseMAE(enc, decoder=CrossAttentionDecoder((2, 2), 48, 16, 1, 2), mask_ratio=0.75)
