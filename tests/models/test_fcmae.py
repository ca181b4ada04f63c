"""FCMAE: the prediction never depends on hidden pixels, the loss is the norm-pix MSE of
hidden cells (numpy), and every token-grid mask generator works on the cell grid."""

import keras
import numpy as np
import pytest

from keras_mim.models import build_method
from tests.conftest import to_numpy

NOISE = np.array([[0.9, 0.1, 0.5, 0.8], [0.2, 0.7, 0.9, 0.1]], "float32")  # keeps the lowest (ratio 0.6: 1 cell)


def hide_differently(rng, x, mask):
    pixels = np.kron(mask.reshape(-1, 2, 2), np.ones((32, 32), "float32"))[..., None]
    return x * (1 - pixels) + rng.random(x.shape).astype("float32") * pixels


def norm_pix_loss(images, pred, mask):
    """Numpy reference: per-cell normalised pixels (unbiased variance, eps 1e-6), MSE, hidden cells."""
    b, h, w, c = images.shape
    cells = images.reshape(b, h // 32, 32, w // 32, 32, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, 32 * 32 * c)
    target = (cells - cells.mean(-1, keepdims=True)) / np.sqrt(cells.var(-1, ddof=1, keepdims=True) + 1e-6)
    per_cell = ((pred - target) ** 2).mean(-1)
    return (per_cell * mask).sum() / mask.sum()


@pytest.mark.parametrize("method", ["fcmae", "spark"])
def test_prediction_ignores_hidden_pixels_and_loss_matches_numpy(method, rng):
    model = build_method(method, seed=0)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    out = model(x, noise=NOISE, training=True)  # training: batch statistics over visible cells only
    mask = to_numpy(out["mask"])
    np.testing.assert_array_equal(mask, [[1, 0, 1, 1], [1, 1, 1, 0]])
    again = model(hide_differently(rng, x, mask), noise=NOISE, training=True)
    np.testing.assert_allclose(to_numpy(again["pred"]), to_numpy(out["pred"]), rtol=1e-5, atol=1e-5)
    loss = float(model.compute_loss(x=x, y_pred=out))
    np.testing.assert_allclose(loss, norm_pix_loss(x, to_numpy(out["pred"]), mask), rtol=1e-4)


@pytest.mark.parametrize("generator", ["random", "block", "grid", "green"])
def test_token_grid_mask_generators_work_on_the_cell_grid(generator):
    model = build_method("fcmae", mask_generator=generator, mask_ratio=0.75 if generator == "grid" else 0.5, seed=0)
    out = model(np.zeros((2, 64, 64, 3), "float32"))
    mask = to_numpy(out["mask"])
    assert mask.shape == (2, 4) and np.all(mask.sum(-1) == mask[0].sum()) and 0 < mask[0].sum() < 4


def test_reconstruct_and_bad_arguments():
    model = build_method("fcmae", seed=0)
    rec, pixel_mask, mask = model.reconstruct(np.random.rand(2, 64, 64, 3).astype("float32"))
    assert tuple(rec.shape) == (2, 64, 64, 3) and tuple(pixel_mask.shape) == (2, 64, 64, 1)
    with pytest.raises(ValueError, match="decoder_depth"):
        build_method("fcmae", decoder_depth=0)
    with pytest.raises(TypeError, match="convolutional encoder"):
        type(model)(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
            build_method("mae").encoder)))
