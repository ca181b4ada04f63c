import keras
import numpy as np
import pytest

from keras_mim import ImageClassifier, LinearProbe, MaskedAutoencoder
from keras_mim.data import load_labelled_digits
from keras_mim.evaluation import fit_linear_probe
from tests.conftest import to_numpy
from tests.training import jit_for_backend


def test_a_short_probe_is_scored_as_it_trained():
    """`keras-mim probe --epochs 3` once reported test 0.22 against train 0.80 (10 epochs:
    0.911): after 36 steps the head BatchNorm's moving variance, started at 1, was still
    171-11484x the features'. A pretrained encoder's features vary little; the final norm's
    scale x 0.05 gives this random one such features (variances 2e-6 to 3e-5), on which the
    old probe scored 0.24 on test against 0.65 for its head on the training features, with a
    moving variance 878-10384x theirs. Now the moving statistics are the features' (numpy
    over the encoder's cls tokens) and the probe scores on test what its head learned.

    (Its test accuracy after 3 epochs is not within 5 points of 10 epochs' here: 0.66 against
    0.75 on PyTorch, 0.56 against 0.74 on TensorFlow, its head's training accuracy rising as
    much: a random encoder's features take more than 3 epochs to fit.)"""
    x_train, y_train = load_labelled_digits("train")
    x_test, y_test = load_labelled_digits("test")
    keras.utils.set_random_seed(0)
    encoder = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0).encoder
    gamma, beta = encoder.norm.get_weights()
    encoder.norm.set_weights([0.05 * gamma, beta])
    # the cls token after the final norm: what the probe reads
    feats, test_feats = (to_numpy(encoder(x, training=False))[:, 0].astype("float64") for x in (x_train, x_test))
    probe = LinearProbe(encoder, num_classes=10, seed=0)
    fit_linear_probe(probe, x_train, y_train, epochs=3, jit_compile=jit_for_backend(), verbose=0)

    var, mean = to_numpy(probe.head_norm.moving_variance), to_numpy(probe.head_norm.moving_mean)
    np.testing.assert_allclose(var, feats.var(0), rtol=0.3)
    assert abs(np.median(var / feats.var(0)) - 1) < 0.1, var / feats.var(0)
    assert (np.abs(mean - feats.mean(0)) < 0.2 * feats.std(0)).all()
    kernel, bias = probe.head.get_weights()
    logits = (test_feats - mean) / np.sqrt(var + 1e-6) @ kernel + bias  # the probe at inference
    np.testing.assert_allclose(to_numpy(probe(x_test[:64])), logits[:64], rtol=1e-3, atol=1e-3)
    test = float(np.mean(logits.argmax(-1) == y_test))
    # what the head learned: the training features normalised by their own statistics
    learned = (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-6) @ kernel + bias
    train = float(np.mean(learned.argmax(-1) == y_train))
    assert test > 0.45 and test > train - 0.05, (test, train)


def test_bad_probe_arguments():
    encoder = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1).encoder
    x, y = np.zeros((4, 16, 16, 1), "float32"), np.arange(4) % 2
    with pytest.raises(TypeError, match="`probe` must be a keras_mim LinearProbe, got ImageClassifier"):
        fit_linear_probe(ImageClassifier(encoder, 2), x, y)
    probe = LinearProbe(encoder, 2)
    with pytest.raises(ValueError, match=r"`labels` must be a 1-D array of 4 class ids, got shape \(3,\)"):
        fit_linear_probe(probe, x, y[:3])
    with pytest.raises(ValueError, match="`labels` hold class 3 but the probe has `num_classes`=2"):
        fit_linear_probe(probe, x, np.arange(4))
    with pytest.raises(ValueError, match="`warmup_epochs` must be a non-negative int, got -1"):
        fit_linear_probe(probe, x, y, warmup_epochs=-1)
