"""Anomaly scores by reconstruction error: each score equals a numpy computation of the
hidden-patch error over the same fixed masks, and the AUROC equals scikit-learn's on a
constructed case (digits against inverted digits)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from keras_mim import MaskedAutoencoder
from keras_mim.data import load_labelled_digits
from keras_mim.evaluation.anomaly import anomaly_auroc, fixed_mask_noise, reconstruction_scores
from keras_mim.layers.patching import patchify
from tests.conftest import expected_visible, to_numpy


def numpy_errors(model, images, noise):
    """Hidden-patch MSE against raw pixels (norm_pix_loss=False), the mask from argsort of the noise."""
    n = noise.shape[0]
    keep = expected_visible(n, model.mask_ratio)
    hidden = np.ones(n)
    hidden[np.argsort(noise, kind="stable")[:keep]] = 0
    pred = to_numpy(model(images, noise=np.tile(noise[None], (len(images), 1)), training=False)["pred"])
    target = to_numpy(patchify(images, model.patch_size))
    per_token = ((pred - target) ** 2).mean(-1)  # (B, N)
    return (per_token * hidden).sum(1) / hidden.sum()


def test_scores_match_numpy_and_auroc_matches_sklearn():
    model = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, norm_pix_loss=False, seed=0)
    digits, _ = load_labelled_digits("test", image_size=(16, 16), seed=0)
    images = np.concatenate([digits[:4], 1.0 - digits[4:8]])  # normal, then inverted
    labels = np.array([0] * 4 + [1] * 4)
    scores, errors = reconstruction_scores(model, images, num_masks=2, seed=1, batch_size=8, verbose=0)
    noise = fixed_mask_noise(2, model.encoder.num_patches, seed=1)
    expected = np.stack([numpy_errors(model, images, noise[k]) for k in range(2)], axis=1)
    np.testing.assert_allclose(errors, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scores, expected.mean(1), rtol=1e-4, atol=1e-6)
    assert anomaly_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


@pytest.mark.backend_independent
def test_bad_arguments_are_named():
    model = MaskedAutoencoder.from_preset("mae_vit_test")
    with pytest.raises(ValueError, match="`num_masks` must be a positive int"):
        reconstruction_scores(model, np.zeros((2, 16, 16, 3)), num_masks=0)
    with pytest.raises(TypeError, match="must be a pretraining model"):
        reconstruction_scores(model.encoder, np.zeros((2, 16, 16, 3)))
    with pytest.raises(ValueError, match="`labels` must be 0"):
        anomaly_auroc([0.1, 0.2], [1, 1])
