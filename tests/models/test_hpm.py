"""HPM: easy-to-hard masks from an EMA teacher's predicted losses, a pairwise ranking loss."""

import math

import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder
from keras_mim.models.hpm import HPM, HPMSchedule, pairwise_ranking_loss
from keras_mim.models.mae_decoder import MAEDecoder
from tests.conftest import backend_grads, to_numpy
from tests.training import assert_loss_falls, assert_roundtrip, digits, jit_for_backend


# ------------------------------------------------------------------ numpy references
def reference_per_patch_loss(images, pred, p=4):
    """Official MAE target (per-patch normalised, unbiased variance, eps 1e-6) and MSE per patch."""
    n, h, w, c = images.shape
    x = images.astype(np.float64).reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    target = x.reshape(n, (h // p) * (w // p), p * p * c)
    target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    return ((pred.astype(np.float64) - target) ** 2).mean(-1)


def reference_ranking_loss(loss_pred, loss_target, mask):
    """The official `forward_learning_loss(relative=True)` on the hidden patches of each sample,
    taken in index order as the official decoder's `[:, -mask_num:]` slice does."""
    total, valid = 0.0, 0.0
    for b in range(len(mask)):
        hidden = np.flatnonzero(mask[b])
        p, t = loss_pred[b, hidden].astype(np.float64), loss_target[b, hidden].astype(np.float64)
        positive = (t[None, :] > t[:, None]).astype(np.float64)  # [i, j]: target_j > target_i
        negative = (t[None, :] < t[:, None]).astype(np.float64)
        sig = 1.0 / (1.0 + np.exp(-(p[None, :] - p[:, None])))
        total += (-positive * np.log(sig + 1e-6) - negative * np.log(1 - sig + 1e-6)).sum()
        valid += positive.sum() + negative.sum()
    return total / valid


def model(**kwargs):
    return HPM.from_preset("hpm_vit_test", seed=0, **kwargs)


B = 16  # one batch size for every eager call: JAX compiles each op once per shape


def images(rng, b=B):
    return rng.random((b, 16, 16, 3)).astype("float32")


# ------------------------------------------------------------------ the defining property
def test_masks_hide_the_patches_the_teacher_predicts_hardest(rng):
    hpm = model()
    hpm.set_alpha(0.5)
    x = images(rng)
    draws = [hpm(x) for _ in range(4)]
    difficulty = to_numpy(draws[0]["difficulty"])
    hardest = np.argsort(-difficulty, axis=1)[:, : int(12 * 0.5)]  # 12 hidden of 16
    masks = np.stack([to_numpy(d["mask"]) for d in draws])  # (4, B, N)
    np.testing.assert_array_equal(masks.sum(-1), 12)
    np.testing.assert_array_equal(np.take_along_axis(masks, np.broadcast_to(hardest, (4, B, 6)), -1), 1.0)
    assert not np.array_equal(masks[0], masks[1])  # the other hidden patches are random
    # the ranking is the teacher's: the student's weights do not change it, the teacher's do
    for v in hpm.encoder.trainable_weights + hpm.loss_predictor.trainable_weights:
        v.assign(v * 0.0 + 0.1)
    np.testing.assert_allclose(to_numpy(hpm.predict_difficulty(x)), difficulty, atol=1e-6)
    hpm.teacher_loss_predictor.weights[-2].assign(rng.normal(size=hpm.teacher_loss_predictor.weights[-2].shape))
    assert not np.allclose(to_numpy(hpm.predict_difficulty(x)), difficulty, atol=1e-3)


def test_alpha_zero_is_random_masking(rng):
    hpm = model()  # alpha starts at 0 until a schedule sets it
    x = np.repeat(images(rng, 1), B, axis=0)
    freq = np.concatenate([to_numpy(hpm(x)["mask"]) for _ in range(8)]).mean(0)  # 128 draws, one image
    # every patch hidden about 3/4 of the time (std 0.04); none always (as difficulty would)
    assert 0.5 < freq.min() and freq.max() < 0.95, freq


def test_schedule_and_loss_falls_on_real_digits():
    keras.utils.set_random_seed(0)
    hpm = HPM.from_preset("hpm_vit_test", num_channels=1, seed=0)
    x = digits(128)
    losses = assert_loss_falls(hpm, x, epochs=5)  # fit adds HPMSchedule(epochs) itself
    logs = hpm.history.history
    # alpha as seen INSIDE the (jitted) training steps, epoch by epoch: 0.5 * (e + 1) / 5
    np.testing.assert_allclose(logs["alpha"], [0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-6)
    np.testing.assert_allclose(np.add(logs["reconstruction_loss"], logs["ranking_loss"]), losses, rtol=1e-4)
    assert logs["reconstruction_loss"][-1] < 0.75 * logs["reconstruction_loss"][0]
    # the predictor learns part of the order: below its start and below chance (log 2)
    assert logs["ranking_loss"][-1] < min(logs["ranking_loss"][0], math.log(2))
    # An explicit schedule wins over the automatic one (a run split over several fit calls).
    teacher_before = to_numpy(hpm.teacher_encoder.weights[2])
    logs = hpm.fit(x[:64], batch_size=32, epochs=2, verbose=0, callbacks=[HPMSchedule(8)]).history
    np.testing.assert_allclose(logs["alpha"], [0.5 / 8, 1.0 / 8], atol=1e-6)
    assert float(to_numpy(hpm.ema_momentum)) == pytest.approx(0.999 + 0.0009 * 1 / 100)
    teacher_after = to_numpy(hpm.teacher_encoder.weights[2])
    assert not np.allclose(teacher_after, teacher_before)  # the EMA teacher follows the student
    assert not np.allclose(teacher_after, to_numpy(hpm.encoder.weights[2]))
    assert np.all(np.isfinite(logs["loss"]))


def test_schedule_formulas():
    (schedule,) = model().training_callbacks(epochs=200, steps_per_epoch=7)  # what the CLI adds
    assert isinstance(schedule, HPMSchedule) and schedule.epochs == 200
    alphas = [schedule.alpha(e, 0.5) for e in (0, 99, 199, 250)]
    assert alphas == pytest.approx([0.5 / 200, 0.25, 0.5, 0.5])
    momenta = [schedule.ema_momentum(e) for e in (0, 50, 100, 150)]
    assert momenta == pytest.approx([0.999, 0.99945, 0.9999, 0.9999])


# ------------------------------------------------------------------ the losses
def test_ranking_loss_matches_official_formula_and_is_detached(rng):
    b, n = 3, 8
    pred = rng.normal(size=(b, n)).astype("float32")
    target = rng.random((b, n)).astype("float32")
    target[:, 1] = target[:, 2]  # ties form no pair
    mask = np.zeros((b, n), "float32")
    for i in range(b):
        mask[i, rng.permutation(n)[:5]] = 1.0
    loss = float(pairwise_ranking_loss(pred, target, mask))
    assert loss == pytest.approx(reference_ranking_loss(pred, target, mask), rel=1e-5)
    g_pred, g_target = backend_grads(lambda p, t: pairwise_ranking_loss(p, t, mask), pred, target)
    np.testing.assert_array_equal(g_target, 0.0)  # no gradient into the reconstruction losses
    np.testing.assert_array_equal(g_pred[mask == 0], 0.0)  # visible patches play no part
    step = 1e-4  # central differences of the numpy reference
    numeric = np.zeros((b, n))
    for i in range(b):
        for j in range(n):
            up, down = pred.astype(np.float64), pred.astype(np.float64)
            up[i, j] += step
            down[i, j] -= step
            numeric[i, j] = (reference_ranking_loss(up, target, mask) - reference_ranking_loss(down, target, mask)) / (
                2 * step
            )
    np.testing.assert_allclose(g_pred, numeric, atol=1e-4)


def test_total_loss_is_mae_plus_ranking_and_teacher_is_an_ema(rng):
    hpm = model()
    x = images(rng)
    out = hpm(x, noise=rng.random((B, 16)).astype("float32"))
    assert "difficulty" not in out  # a fixed mask needs no teacher
    mask = to_numpy(out["mask"])
    per_patch = reference_per_patch_loss(x, to_numpy(out["pred"]))
    ranking = reference_ranking_loss(to_numpy(out["loss_pred"]), per_patch, mask)
    expected = (per_patch * mask).sum() / mask.sum() + ranking
    assert float(hpm.compute_loss(x=x, y_pred=out, training=False)) == pytest.approx(expected, rel=1e-4)
    # a training step moves the teacher: t <- m * t + (1 - m) * s (before the student's update)
    for v in hpm.teacher_encoder.weights:
        v.assign(v * 0.0 + 1.0)
    student = [to_numpy(v) for v in hpm.encoder.weights]
    hpm.ema_momentum.assign(0.75)
    hpm.compute_loss(x=x, y_pred=out, training=True)
    for t, s in zip(hpm.teacher_encoder.weights, student):
        np.testing.assert_allclose(to_numpy(t), 0.75 + 0.25 * s, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ saving, inference, bad input
def test_keras_roundtrip_keeps_teacher_and_schedule_state(rng, tmp_path):
    hpm = model()
    hpm.set_alpha(0.3)
    hpm.ema_momentum.assign(0.9995)
    for v in hpm.teacher_loss_predictor.weights:  # a teacher that differs from the student
        v.assign(v * 1.5 + 0.01)
    x = images(rng)
    loaded = assert_roundtrip(hpm, x, tmp_path, call_kwargs={"noise": rng.random((B, 16)).astype("float32")})
    np.testing.assert_allclose(to_numpy(loaded.predict_difficulty(x)), to_numpy(hpm.predict_difficulty(x)), atol=1e-6)
    assert float(to_numpy(loaded.alpha)) == pytest.approx(0.3) and loaded.alpha_max == 0.5
    assert float(to_numpy(loaded.ema_momentum)) == pytest.approx(0.9995)
    assert loaded.loss_predictor.depth == hpm.decoder.depth and loaded.loss_predictor.output_dim == 1


def test_predict_and_reconstruct(rng):
    hpm = model()
    x = images(rng)
    out = hpm.predict(x, batch_size=B, verbose=0)
    assert sorted(out) == ["difficulty", "ids_restore", "loss_pred", "mask", "pred"]
    assert out["loss_pred"].shape == (B, 16) and out["difficulty"].shape == (B, 16)
    rec, _, _ = hpm.reconstruct(x)
    assert tuple(rec.shape) == (B, 16, 16, 3)


def test_custom_loss_predictor():
    hpm = model(loss_predictor={"decoder_dim": 32, "depth": 2, "num_heads": 4})
    assert (hpm.loss_predictor.depth, hpm.loss_predictor.num_heads, hpm.loss_predictor.output_dim) == (2, 4, 1)
    assert hpm.decoder.depth == 1  # the pixel decoder keeps the preset's
    assert hpm.teacher_loss_predictor.depth == 2 and not hpm.teacher_loss_predictor.trainable


def test_bad_input():
    with pytest.raises(ValueError, match="`alpha_max` must be in \\[0, 1\\], got 1.5"):
        model(alpha_max=1.5)
    with pytest.raises(TypeError, match="`alpha_max` must be a float"):
        model(alpha_max=True)
    with pytest.raises(ValueError, match="hides 1 of 16 patches, expected at least 2"):
        model(mask_ratio=0.05)
    with pytest.raises(TypeError, match="`mask_generator` must be None or an EasyToHardMaskGenerator"):
        model(mask_generator="random")
    with pytest.raises(TypeError, match="`loss_predictor` must be a MAEDecoder"):
        model(loss_predictor="big")
    with pytest.raises(ValueError, match="output_dim 2"):
        model(loss_predictor=MAEDecoder((4, 4), 2, decoder_dim=8, depth=1, num_heads=2))
    hpm = model()
    with pytest.raises(ValueError, match="`alpha` must be in \\[0, 1\\], got -0.1"):
        hpm.set_alpha(-0.1)
    with pytest.raises(ValueError, match="`epochs` must be a positive int, got 0"):
        HPMSchedule(0)
    with pytest.raises(ValueError, match="`momentum` must be a pair"):
        HPMSchedule(10, momentum=(0.9,))
    with pytest.raises(ValueError, match="`ramp_epochs` must be a positive int"):
        HPMSchedule(10, ramp_epochs=-1)
    schedule = HPMSchedule(10)
    schedule.set_model(MaskedAutoencoder.from_preset("mae_vit_test"))
    with pytest.raises(TypeError, match="HPMSchedule drives an HPM model, got MaskedAutoencoder"):
        schedule.on_train_begin()
    hpm.compile(optimizer="adam", jit_compile=jit_for_backend())
    with pytest.raises(ValueError, match="has 1 channels"):  # refused before a step is traced
        hpm.fit(np.zeros((4, 16, 16, 1), "float32"), epochs=1, verbose=0)
