"""SatMAE: the loss against numpy (each group against its own bands, MSE per token, summed over
hidden tokens / their count; with and without norm-pix), independent vs consistent masks,
hidden tokens never reach the encoder, the reconstruction in band order, clear errors and
`.keras` round trips (images and dated frames). The generic suite
(tests/models/test_method_suite.py) trains it on digits tiled to 10 bands, round-trips it and
feeds it bad input on every backend."""

import numpy as np
import pytest

from keras_mim import GroupChannelEncoder, SatMAE
from keras_mim.models.satmae import SENTINEL2_GROUPS
from tests.conftest import to_numpy
from tests.training import assert_loss_falls, assert_roundtrip

P = 4  # patch size of the test models


def patchify_np(x, p=P):
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify_np(x, c, size=16, p=P):
    g = size // p
    x = x.reshape(len(x), g, g, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(len(x), size, size, c)


def numpy_loss(frames, preds, mask, groups, norm, t=1):
    """The official SatMAE loss, each group scored against its own bands: frames `(B T, H, W, C)`."""
    full = patchify_np(frames)  # (B T, N, p p C)
    b, n = mask.shape[0], full.shape[1]
    m = mask.reshape(b, t, len(groups), n)
    total = 0.0
    for g, group in enumerate(groups):
        target = patchify_np(frames[..., list(group)])
        if norm:
            target = (target - full.mean(-1, keepdims=True)) / np.sqrt(full.var(-1, ddof=1, keepdims=True) + 1e-6)
        err = ((preds[g] - target.reshape(b, t * n, -1)) ** 2).mean(-1)  # (B, T N)
        total += (err * m[:, :, g].reshape(b, t * n)).sum()
    return total / mask.sum()


def images(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 16, 16, 10)).astype("float32")


def temporal_model(**kwargs):
    enc = GroupChannelEncoder(image_size=16, patch_size=P, num_channels=3, channel_groups=((0, 2), (1,)),
                              num_frames=2, embed_dim=32, depth=1, num_heads=2, seed=0)
    return SatMAE(enc, decoder=dict(decoder_dim=32, depth=1, num_heads=2), seed=0, **kwargs)


def temporal_inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    stamps = np.stack([rng.integers(2002, 2022, (n, 2)), rng.integers(1, 13, (n, 2)), rng.integers(0, 24, (n, 2))], -1)
    return {"frames": rng.random((n, 2, 16, 16, 3)).astype("float32"), "timestamps": stamps.astype("float32")}


@pytest.mark.parametrize("norm", [False, True])
def test_loss_matches_numpy_each_group_against_its_own_bands(norm):
    model = SatMAE.from_preset("satmae_vit_test", seed=0, norm_pix_loss=norm)
    x = images()
    noise = np.random.default_rng(1).random((4, 48)).astype("float32")
    out = model(x, noise=noise, training=False)
    preds = [to_numpy(p).astype("float64") for p in out["pred"]]
    assert [p.shape for p in preds] == [(4, 16, 64), (4, 16, 64), (4, 16, 32)]
    expected = numpy_loss(x.astype("float64"), preds, to_numpy(out["mask"]), SENTINEL2_GROUPS, norm)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(expected, rel=1e-4)


def test_temporal_loss_matches_numpy():
    model = temporal_model(norm_pix_loss=True)
    x = temporal_inputs()
    out = model(x, noise=np.random.default_rng(2).random((2, 64)).astype("float32"), training=False)
    preds = [to_numpy(p).astype("float64") for p in out["pred"]]
    assert [p.shape for p in preds] == [(2, 32, 32), (2, 32, 16)]
    frames = x["frames"].reshape(4, 16, 16, 3).astype("float64")
    expected = numpy_loss(frames, preds, to_numpy(out["mask"]), ((0, 2), (1,)), True, t=2)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(expected, rel=1e-4)


def test_independent_masks_differ_across_groups_consistent_ones_do_not():
    x = images(8)
    independent = to_numpy(SatMAE.from_preset("satmae_vit_test", seed=0)(x)["mask"]).reshape(8, 3, 16)
    consistent = to_numpy(SatMAE.from_preset("satmae_vit_test", seed=0, mask_generator="consistent")(x)["mask"])
    consistent = consistent.reshape(8, 3, 16)
    assert (independent.sum((1, 2)) == 36).all() and (consistent.sum((1, 2)) == 36).all()
    assert (consistent == consistent[:, :1]).all() and (consistent.sum(2) == 12).all()
    assert any((independent[b, 0] != independent[b, 1]).any() for b in range(8))
    temporal = to_numpy(temporal_model(mask_generator="consistent")(temporal_inputs())["mask"]).reshape(2, 4, 16)
    assert (temporal == temporal[:, :1]).all() and (temporal.sum(2) == 12).all()  # every frame and group


def test_hidden_tokens_never_reach_the_encoder():
    model = SatMAE.from_preset("satmae_vit_test", seed=0)
    x = images(2)
    noise = np.random.default_rng(3).random((2, 48)).astype("float32")
    masking = model.random_masking(x, noise=noise)
    mask = to_numpy(masking["mask"]).reshape(2, 3, 16)
    changed = x.copy()
    for b in range(2):
        for g, group in enumerate(SENTINEL2_GROUPS):
            for n in np.flatnonzero(mask[b, g]):  # a hidden token: its group's bands at its patch
                i, j = divmod(n, 4)
                changed[b, i * P : (i + 1) * P, j * P : (j + 1) * P, list(group)] += 5.0
    assert not np.allclose(changed, x)
    a = to_numpy(model.encoder(x, ids_keep=masking["ids_keep"]))
    b = to_numpy(model.encoder(changed, ids_keep=masking["ids_keep"]))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_reconstruction_is_in_band_order_with_each_bands_group_mask():
    model = SatMAE.from_preset("satmae_vit_test", seed=0)
    x = images(2)
    noise = np.random.default_rng(4).random((2, 48)).astype("float32")
    rec, pixel_mask, token_mask = (to_numpy(t) for t in model.reconstruct(x, noise=noise))
    out = model(x, noise=noise, training=False)
    mask = to_numpy(out["mask"]).reshape(2, 3, 16)
    assert rec.shape == pixel_mask.shape == x.shape and token_mask.shape == (2, 48)
    for g, group in enumerate(SENTINEL2_GROUPS):
        pred = unpatchify_np(to_numpy(out["pred"][g]), len(group))
        hidden = unpatchify_np(np.repeat(mask[:, g, :, None], P * P, -1), 1)
        for k, band in enumerate(group):
            np.testing.assert_allclose(rec[..., band], pred[..., k], atol=1e-6)
            np.testing.assert_array_equal(pixel_mask[..., band], hidden[..., 0])
    rec_t, mask_t, _ = temporal_model().reconstruct(temporal_inputs())
    assert tuple(rec_t.shape) == tuple(mask_t.shape) == (2, 2, 16, 16, 3)


def test_bad_input_fails_clearly():
    model = SatMAE.from_preset("satmae_vit_test", seed=0)
    with pytest.raises(ValueError, match="channels"):
        model(np.zeros((2, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match="size"):
        model(np.zeros((2, 12, 16, 10), "float32"))
    temporal = temporal_model()
    with pytest.raises(ValueError, match="timestamps"):
        temporal(temporal_inputs()["frames"])
    with pytest.raises(ValueError, match="timestamps"):
        temporal.fit({"frames": temporal_inputs()["frames"]}, verbose=0)


@pytest.mark.backend_independent
def test_bad_arguments_fail_clearly():
    from keras_mim import ViTEncoder

    with pytest.raises(TypeError, match="GroupChannelEncoder"):
        SatMAE(ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2))
    enc = GroupChannelEncoder(image_size=16, patch_size=4, num_channels=10, channel_groups=SENTINEL2_GROUPS,
                              embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="unknown keys \\['width'\\]"):
        SatMAE(enc, decoder={"width": 32})
    with pytest.raises(ValueError, match="mask_generator"):
        SatMAE(enc, mask_generator="sometimes")
    with pytest.raises(ValueError, match="mask_ratio"):
        SatMAE(enc, mask_ratio=1.0)


def test_keras_round_trip_images(tmp_path):
    model = SatMAE.from_preset("satmae_vit_test", seed=0, mask_generator="consistent", norm_pix_loss=True)
    noise = np.random.default_rng(5).random((2, 48)).astype("float32")
    loaded = assert_roundtrip(model, images(2), tmp_path, call_kwargs={"noise": noise}, keys=["mask"])
    for a, b in zip(model(images(2), noise=noise)["pred"], loaded(images(2), noise=noise)["pred"]):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


def test_keras_round_trip_temporal(tmp_path):
    model = temporal_model()
    x, noise = temporal_inputs(), np.random.default_rng(6).random((2, 64)).astype("float32")
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs={"noise": noise}, keys=["mask", "ids_restore"])
    for a, b in zip(model(x, noise=noise)["pred"], loaded(x, noise=noise)["pred"]):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


@pytest.mark.one_backend
def test_loss_falls_on_smooth_multispectral_images():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, 16, dtype="float32")
    a, b, c = (rng.random((64, 1, 1, 10)).astype("float32") for _ in range(3))
    x = a * ramp[None, :, None, None] + b * ramp[None, None, :, None] + 0.5 * c  # (64, 16, 16, 10)
    model = SatMAE.from_preset("satmae_vit_test", seed=0)
    assert_loss_falls(model, x, epochs=5, batch_size=16)


def test_band_statistics_normalise_the_targets_and_are_undone_in_the_reconstruction():
    rng = np.random.default_rng(7)
    mean, std = rng.random(10) * 0.3 + 0.3, rng.random(10) * 0.1 + 0.1
    model = SatMAE.from_preset("satmae_vit_test", seed=0, band_mean=mean.tolist(), band_std=std.tolist())
    x = images(2)
    noise = rng.random((2, 48)).astype("float32")
    out = model(x, noise=noise, training=False)
    preds = [to_numpy(p).astype("float64") for p in out["pred"]]
    seen = np.clip((x - (mean - 2 * std)) / (4 * std), 0, 1)
    expected = numpy_loss(seen, preds, to_numpy(out["mask"]), SENTINEL2_GROUPS, False)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(expected, rel=1e-4)
    rec = to_numpy(model.reconstruct(x, noise=noise)[0])
    for g, group in enumerate(SENTINEL2_GROUPS):
        pred = unpatchify_np(preds[g], len(group))
        for k, band in enumerate(group):
            raw = pred[..., k] * 4 * std[band] + mean[band] - 2 * std[band]
            np.testing.assert_allclose(rec[..., band], raw, atol=1e-5)
