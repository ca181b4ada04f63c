"""SparK over a keras-hub backbone (the optional `keras-hub` extra): a `ResNetBackbone` made
sparse leaks nothing from hidden cells, equals the dense backbone with nothing hidden, trains,
and comes back as the same keras-hub backbone. The keras-hub tier of tools/test.sh runs it."""

import numpy as np
import pytest

from keras_mim import SparK
from keras_mim.models.sparse_cnn import SparseCNN
from tests.conftest import to_numpy
from tests.models.test_sparse_cnn import MASK, hide_differently

keras_hub = pytest.importorskip("keras_hub")


def resnet18_like():
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 64, 64],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(64, 64, 3))


@pytest.mark.one_backend(backend="torch")  # SparK's sparse path is tested on every backend in tests/models
def test_keras_hub_resnet_made_sparse_leaks_nothing_and_comes_back_pretrained(rng):
    backbone = resnet18_like()
    enc = SparseCNN(backbone)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    a = [to_numpy(f) for f in enc.stages(x, MASK, training=True)]
    b = [to_numpy(f) for f in enc.stages(hide_differently(rng, x, MASK), MASK, training=True)]
    assert [f.shape[1] for f in a] == [16, 8, 4, 2]
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
    np.testing.assert_allclose(to_numpy(enc.stages(x, training=False)[-1]), to_numpy(backbone(x, training=False)),
                               rtol=1e-5, atol=1e-5)
    model = SparK(enc, decoder_width=32, seed=0)
    model.compile(optimizer="adam")
    before = to_numpy(backbone.get_layer("conv1_conv").kernel).copy()
    model.fit(x, epochs=1, verbose=0)
    assert model.encoder.backbone is backbone and isinstance(backbone, keras_hub.models.ResNetBackbone)
    assert not np.array_equal(before, to_numpy(backbone.get_layer("conv1_conv").kernel))
