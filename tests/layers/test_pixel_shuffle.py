import keras
import numpy as np
import pytest

from keras_mim.layers import PixelShuffleHead, pixel_shuffle
from tests.conftest import to_numpy


def reference_pixel_shuffle(x, sh, sw):
    """PyTorch's nn.PixelShuffle definition, channels-last, as an explicit loop:
    input channel c*sh*sw + i*sw + j at (y, x) goes to pixel (y*sh + i, x*sw + j), channel c."""
    b, h, w, d = x.shape
    c = d // (sh * sw)
    out = np.zeros((b, h * sh, w * sw, c), x.dtype)
    for n in range(b):
        for y in range(h):
            for xx in range(w):
                for k in range(c):
                    for i in range(sh):
                        for j in range(sw):
                            out[n, y * sh + i, xx * sw + j, k] = x[n, y, xx, k * sh * sw + i * sw + j]
    return out


@pytest.mark.parametrize("scale,channels", [(2, 3), (3, 1), ((2, 3), 2)])
def test_matches_pytorch_definition(rng, scale, channels):
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    x = rng.random((2, 3, 4, sh * sw * channels)).astype("float32")
    out = to_numpy(pixel_shuffle(x, scale))
    np.testing.assert_array_equal(out, reference_pixel_shuffle(x, sh, sw))


def test_head_is_a_1x1_conv_then_shuffle_and_converts_from_torch(rng):
    torch = pytest.importorskip("torch")
    head = PixelShuffleHead(4, num_channels=3)
    feats = rng.standard_normal((2, 2, 3, 8)).astype("float32")
    head.build(feats.shape)
    # the official SimMIM decoder: Conv2d(D, s*s*C, 1) + PixelShuffle(s), weights copied without permutation
    conv = torch.nn.Conv2d(8, 48, kernel_size=1)
    head.proj.kernel.assign(conv.weight.detach().numpy()[:, :, 0, 0].T)
    head.proj.bias.assign(conv.bias.detach().numpy())
    with torch.no_grad():
        ref = torch.nn.PixelShuffle(4)(conv(torch.from_numpy(feats.transpose(0, 3, 1, 2))))
    out = to_numpy(head(feats))
    assert out.shape == (2, 8, 12, 3)
    np.testing.assert_allclose(out, ref.numpy().transpose(0, 2, 3, 1), atol=1e-5)


def test_head_init_is_torch_conv_default_and_config_roundtrips():
    head = PixelShuffleHead(2, num_channels=1)
    head.build((None, 4, 4, 64))
    bound = 1 / np.sqrt(64)
    assert np.abs(to_numpy(head.proj.kernel)).max() <= bound
    assert np.abs(to_numpy(head.proj.bias)).max() <= bound and np.abs(to_numpy(head.proj.bias)).max() > 0
    clone = PixelShuffleHead.from_config(head.get_config())
    assert clone.scale == (2, 2) and clone.num_channels == 1
    assert head.compute_output_shape((None, 4, 5, 64)) == (None, 8, 10, 1)
    obj = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert isinstance(obj, PixelShuffleHead)


def test_bad_input():
    with pytest.raises(ValueError, match="multiple of scale"):
        pixel_shuffle(np.zeros((1, 2, 2, 6), "float32"), 2)
    with pytest.raises(ValueError, match="`scale`"):
        pixel_shuffle(np.zeros((1, 2, 2, 4), "float32"), 0)
    with pytest.raises(ValueError, match="`num_channels`"):
        PixelShuffleHead(2, num_channels=0)
    with pytest.raises(ValueError, match=r"feature map \(B, h, w, D\)"):
        PixelShuffleHead(2, num_channels=3)(np.zeros((1, 4, 8), "float32"))
