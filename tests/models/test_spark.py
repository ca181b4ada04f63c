"""SparK: any Keras CNN is pretrained through its sparse form and comes back as the
ordinary dense network with the learned weights."""

import keras
import numpy as np
import pytest

from keras_mim.models import SparK
from keras_mim.models.sparse_cnn import SparseCNN
from tests.conftest import to_numpy
from tests.models.test_sparse_cnn import small_cnn


# One pass trains (rotated): the sparse graph's numerics, its round trip and the SparK step run on
# every backend in test_sparse_cnn.py and the method suite; this end-to-end fit cost 24 s on JAX.
@pytest.mark.one_backend(backend="rotate")
def test_a_functional_cnn_is_pretrained_and_returned_dense(rng, tmp_path):
    cnn = small_cnn()
    model = SparK(cnn, decoder_width=32, seed=0)
    assert isinstance(model.encoder, SparseCNN) and model.encoder.backbone is cnn
    assert model.densify_norm == "bn"
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    x = rng.random((4, 64, 64, 3)).astype("float32")
    before = [to_numpy(w).copy() for w in cnn.trainable_weights]
    model.fit(x, epochs=1, batch_size=2, verbose=0)
    assert all(not np.array_equal(a, to_numpy(b)) for a, b in zip(before, cnn.trainable_weights))
    sparse = to_numpy(model.encoder.stages(x, np.zeros((4, 4), "float32"), training=False)[-1])
    np.testing.assert_allclose(to_numpy(cnn(x, training=False)), sparse, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "spark.keras")
    loaded = keras.saving.load_model(tmp_path / "spark.keras")
    noise = rng.random((4, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(x, noise=noise)["pred"]), to_numpy(model(x, noise=noise)["pred"]),
                               atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="densify_norm"):
        SparK(small_cnn(), densify_norm="group")
    with pytest.raises(TypeError, match="encoder"):
        SparK(3)
    with pytest.raises(ValueError, match="Unknown CNN"):
        SparK("resnet9000")
