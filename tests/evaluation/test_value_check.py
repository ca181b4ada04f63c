"""The pretraining value check against a numpy k-NN on the same features."""

import keras
import numpy as np
from sklearn.datasets import load_digits

from keras_mim import ViTEncoder
from keras_mim.evaluation import pretraining_value, random_init_encoder
from keras_mim.models.encoder_model import copy_model
from tests.conftest import to_numpy
from tests.evaluation.test_knn import reference_knn
from tests.training import digits


def _top1(encoder, x_bank, y_bank, x_test, y_test, k):
    bank, test = (to_numpy(encoder(x))[:, 0] for x in (x_bank, x_test))  # cls token after the final norm
    return float(np.mean(reference_knn(bank, y_bank, test, 10, k, 0.07).argmax(-1) == y_test))


def test_numbers_are_a_numpy_knn_of_the_encoder_and_of_its_random_init():
    x = digits(160)
    y = load_digits().target[:160].astype("int32")
    encoder = ViTEncoder(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=1, num_heads=2)
    encoder(x[:1])
    start = copy_model(random_init_encoder(encoder, seed=3))  # what the check compares with
    weights = encoder.get_weights()
    encoder.set_weights([w + np.random.default_rng(0).normal(0, 0.2, w.shape).astype(w.dtype) for w in weights])
    result = pretraining_value(encoder, x[:120], y[:120], x[120:], y[120:], seed=3, k=20)
    assert result["pretrained"] == _top1(encoder, x[:120], y[:120], x[120:], y[120:], 20)
    assert result["random_init"] == _top1(start, x[:120], y[:120], x[120:], y[120:], 20)
    assert result["gain"] == result["pretrained"] - result["random_init"]
    assert (result["k"], result["num_train"], result["num_test"]) == (20, 120, 40)
    # deterministic: the seed alone fixes the random initialisation
    keras.utils.set_random_seed(3)
    again = ViTEncoder.from_config(encoder.get_config())
    again(x[:1])
    for a, b in zip(again.get_weights(), start.get_weights()):
        np.testing.assert_array_equal(a, b)
