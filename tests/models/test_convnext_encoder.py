"""ConvNeXtEncoder: sparse encoding leaks nothing from hidden cells, dense mode is the
ordinary network, fine-tuning takes it (official layer-decay groups)."""

import keras
import numpy as np
import pytest

from keras_mim.models import ImageClassifier
from keras_mim.models.convnext_encoder import ConvNeXtEncoder
from keras_mim.optimizers.layer_decay import layer_decay_multipliers, layer_ids
from tests.conftest import to_numpy

SMALL = dict(image_size=(64, 96), depths=(1, 2, 1, 1), dims=(8, 16, 24, 32))


def stages(encoder, x, mask=None, training=False):
    return [to_numpy(f) for f in encoder.stages(x, mask, training=training)]


def test_hidden_pixels_never_reach_visible_positions(rng):
    enc = ConvNeXtEncoder(**SMALL, drop_path_rate=0.0)
    for block in enc.blocks:  # GRN is the identity at initialisation: make it count
        block.grn.set_weights([np.full(block.grn.gamma.shape, 0.7, "float32"),
                               np.full(block.grn.beta.shape, 0.2, "float32")])
    x = rng.random((2, 64, 96, 3)).astype("float32")
    mask = np.array([[1, 0, 0, 0, 1, 1], [0, 1, 1, 0, 0, 1]], "float32")  # 2 x 3 cells, 1 = hidden
    pixels = np.kron(mask.reshape(2, 2, 3), np.ones((32, 32), "float32"))[..., None]
    changed = x * (1 - pixels) + rng.random(x.shape).astype("float32") * pixels
    a, b = stages(enc, x, mask), stages(enc, changed, mask)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
        stride = 64 // fa.shape[1]
        hidden = np.kron(mask.reshape(2, 2, 3), np.ones((32 // stride,) * 2)) == 1
        assert np.all(fa[hidden] == 0) and np.abs(fa[~hidden]).max() > 0
    dense = stages(enc, x)[-1]
    assert not np.allclose(dense, stages(enc, changed)[-1])  # without a mask the hidden pixels count


def test_nothing_hidden_is_the_dense_network(rng):
    enc = ConvNeXtEncoder(**SMALL)
    x = rng.random((2, 64, 96, 3)).astype("float32")
    np.testing.assert_allclose(stages(enc, x, np.zeros((2, 6), "float32"))[-1], stages(enc, x)[-1], atol=1e-6)
    assert tuple(enc(x).shape) == (2, 6, 32) and enc.grid_shape == (2, 3)


def test_layer_decay_follows_the_official_single_grouping():
    enc = ConvNeXtEncoder(**SMALL)
    ids = layer_ids(enc)
    assert ids[enc.stem.kernel.path] == 1 and ids[enc.blocks[0].dwconv.kernel.path] == 1
    assert ids[enc.downsample_convs[0].kernel.path] == 2 == ids[enc.blocks[1].pwconv1.kernel.path]
    assert ids[enc.blocks[2].pwconv2.kernel.path] == 3  # stage 1, second block
    assert ids[enc.downsample_norms[1].gamma.path] == 4  # joins stage 2's first block (1 + 2 + 1)
    scales = layer_decay_multipliers(ImageClassifier(enc, num_classes=3), 0.5)
    assert max(scales.values()) == 1.0 and min(scales.values()) == 0.5 ** 5  # 5 blocks + head


def test_image_classifier_fine_tunes_it(rng):
    enc = ConvNeXtEncoder(**SMALL)
    model = ImageClassifier(enc, num_classes=3)
    model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = rng.random((4, 64, 96, 3)).astype("float32"), np.arange(4) % 3
    model.fit(x, y, epochs=1, verbose=0)
    features = np.mean(stages(model.encoder, x)[-1], axis=(1, 2))
    mean, var = features.mean(-1, keepdims=True), features.var(-1, keepdims=True)
    head = model.head.get_weights()
    gamma, beta = (to_numpy(w) for w in model.fc_norm.weights)
    expected = ((features - mean) / np.sqrt(var + 1e-6) * gamma + beta) @ head[0] + head[1]
    np.testing.assert_allclose(to_numpy(model(x)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="block"):
        ImageClassifier(enc, num_classes=3, block=0)


@pytest.mark.parametrize("kwargs, word", [(dict(image_size=48), "image_size"),
                                          (dict(depths=(1, 1), dims=(8, 16, 24)), "depths"),
                                          (dict(drop_path_rate=1.0), "drop_path_rate")])
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ConvNeXtEncoder(**{**SMALL, **kwargs})


def test_bad_images():
    enc = ConvNeXtEncoder(**SMALL)
    with pytest.raises(ValueError, match="channels"):
        enc.check_images(np.zeros((1, 64, 96, 1), "float32"))
    with pytest.raises(ValueError, match="not divisible"):
        enc.check_images(np.zeros((1, 64, 80, 3), "float32"))
