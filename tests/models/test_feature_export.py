"""Encoders exported for serving through Keras' `Model.export`, run by the matching runtime
(TensorFlow's SavedModel loader, torch.export's loader) on the same images: identical features."""

import keras
import numpy as np
import pytest

from keras_mim import ViTEncoder
from tests.conftest import to_numpy


def tiny():
    return ViTEncoder(image_size=(8, 12), patch_size=4, embed_dim=16, depth=1, num_heads=2, seed=0)


def test_exported_features_equal_the_encoders(rng, tmp_path):
    enc = tiny()
    x = rng.random((3, 8, 12, 3)).astype("float32")
    expected = to_numpy(enc(x))
    if keras.backend.backend() == "torch":
        import torch

        enc.export(str(tmp_path / "vit.pt2"), batch_size=3, verbose=False)  # format="torch"
        out = torch.export.load(str(tmp_path / "vit.pt2")).module()(torch.tensor(x)).detach().numpy()
    else:
        import tensorflow as tf

        enc.export(str(tmp_path / "vit"), verbose=False)  # tf_saved_model, any batch
        served = tf.saved_model.load(str(tmp_path / "vit"))
        out = served.serve(tf.constant(x)).numpy()
        np.testing.assert_allclose(served.serve(tf.constant(x[:1])).numpy(), expected[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.backend_independent
def test_bad_batch_size_is_named(tmp_path):
    with pytest.raises(ValueError, match="`batch_size` must be a positive int"):
        tiny().export(str(tmp_path / "x"), batch_size=0)
