import numpy as np
import pytest

from keras_mim import ViTEncoder
from keras_mim.evaluation import extract_features, knn_evaluate, knn_scores
from tests.conftest import to_numpy
from tests.models.test_image_classifier import load_labels, tiny_encoder
from tests.training import digits


def reference_knn(train, labels, test, num_classes, k, t):
    """DINO's weighted k-NN vote written as a loop."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    out = np.zeros((len(test), num_classes))
    for i, q in enumerate(test):
        sim = train @ q
        for j in np.argsort(-sim, kind="stable")[:k]:
            out[i, labels[j]] += np.exp(sim[j] / t)
    return out


@pytest.mark.parametrize("k, t", [(20, 0.07), (5, 0.5), (1, 1.0)])
def test_votes_match_reference(rng, k, t):
    train = rng.normal(size=(60, 8)).astype("float32")
    labels = rng.integers(0, 4, 60)
    test = rng.normal(size=(7, 8)).astype("float32")
    scores = knn_scores(train, labels, test, num_classes=4, k=k, temperature=t, batch_size=3)
    np.testing.assert_allclose(scores, reference_knn(train, labels, test, 4, k, t), rtol=1e-3)


def test_features_are_pooled_encoder_outputs(rng):
    enc = tiny_encoder()
    x = rng.random((5, 16, 16, 3)).astype("float32")
    out = to_numpy(enc(x))
    np.testing.assert_allclose(extract_features(enc, x, verbose=0), out[:, 0], atol=1e-5)
    np.testing.assert_allclose(extract_features(enc, x, pooling="avg", verbose=0), out[:, 1:].mean(1), atol=1e-5)


def test_knn_on_real_digits_beats_chance():
    x, y = digits(300, channels=1), load_labels(300)
    enc = ViTEncoder(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=1, num_heads=2)
    result = knn_evaluate(enc, x[:200], y[:200], x[200:], y[200:], verbose=0)
    assert result["k"] == 20 and result["pooling"] == "cls"
    assert 0.3 < result["top1"] <= result["top5"] <= 1.0, result


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((4, 3)), np.zeros(4, int), np.zeros((2, 5))), "same D"),
        ((np.ones((4, 3)), np.zeros(3, int), np.ones((2, 3))), r"1-D array of 4 class ids"),
        ((np.ones((4, 3)), np.zeros(4), np.ones((2, 3))), "integer class ids"),
    ],
)
def test_bad_knn_input(args, match):
    with pytest.raises(ValueError, match=match):
        knn_scores(*args, k=2)


def test_k_larger_than_bank():
    with pytest.raises(ValueError, match="`k`=20 is more than the 4"):
        knn_scores(np.ones((4, 3)), np.zeros(4, int), np.ones((2, 3)))


def test_cls_pooling_without_cls_token():
    with pytest.raises(ValueError, match="no"):
        extract_features(tiny_encoder(cls_token=False), np.zeros((2, 16, 16, 3), "float32"), pooling="cls")
