"""Pixel shuffle (depth-to-space in PyTorch's channel order) and SimMIM's prediction head.

PyTorch's `nn.PixelShuffle(s)` sends input channel `c * s * s + i * s + j` of feature
`(y, x)` to output pixel `(y * s + i, x * s + j)`, channel `c`. `pixel_shuffle` keeps
exactly that order (TensorFlow's `depth_to_space` does not), so a converted SimMIM / MFM
1x1-conv decoder needs no channel permutation.
"""

import math

import keras
from keras import ops

from keras_mim.utils import check_positive_int, to_2tuple


def pixel_shuffle(x, scale):
    """Rearrange `(B, h, w, sh * sw * C)` into `(B, h * sh, w * sw, C)`.

    Input channel `c * sh * sw + i * sw + j` at `(y, x)` becomes channel `c` of pixel
    `(y * sh + i, x * sw + j)`, as PyTorch's `nn.PixelShuffle` (channels-last here).

    Args:
        x: tensor `(B, h, w, sh * sw * C)`.
        scale: int `s` or `(sh, sw)`: upsampling factor per axis.

    Returns:
        Tensor `(B, h * sh, w * sw, C)`.

    Examples:
        >>> import numpy as np
        >>> x = np.arange(4, dtype="float32").reshape(1, 1, 1, 4)  # one feature, 2*2*1 channels
        >>> keras.ops.convert_to_numpy(pixel_shuffle(x, 2))[0, :, :, 0].tolist()
        [[0.0, 1.0], [2.0, 3.0]]
    """
    sh, sw = to_2tuple(scale, "scale")
    _, h, w, d = x.shape
    if d is None or d % (sh * sw):
        raise ValueError(
            f"`pixel_shuffle` needs the channel count to be a multiple of scale**2 = {sh * sw} "
            f"for `scale`={scale!r}, got {d} channels."
        )
    c = d // (sh * sw)
    x = ops.reshape(x, (-1, h, w, c, sh, sw))
    x = ops.transpose(x, (0, 1, 4, 2, 5, 3))  # (B, h, sh, w, sw, C)
    return ops.reshape(x, (-1, h * sh, w * sw, c))


@keras.saving.register_keras_serializable(package="keras_mim")
class PixelShuffleHead(keras.layers.Layer):
    """SimMIM's decoder: a 1x1 conv to `s * s * C` channels, then `pixel_shuffle(s)`.

    The 1x1 conv is a Dense on the feature map's last axis: its kernel `(D, s*s*C)` is the
    transposed, squeezed PyTorch conv weight `(s*s*C, D, 1, 1)`. Initialised like
    PyTorch's `nn.Conv2d` default (uniform within `1 / sqrt(D)`, weight and bias), as the
    official SimMIM and MFM leave their decoder conv at that default.

    Args:
        scale: int or `(sh, sw)`: encoder stride, image size / feature-map size.
        num_channels: image channels C to predict.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> head = PixelShuffleHead(4, num_channels=3)
        >>> tuple(head(np.zeros((2, 4, 4, 32), "float32")).shape)
        (2, 16, 16, 3)
    """

    def __init__(self, scale, num_channels, **kwargs):
        super().__init__(**kwargs)
        self.scale = to_2tuple(scale, "scale")
        self.num_channels = check_positive_int(num_channels, "num_channels")

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"PixelShuffleHead takes a feature map (B, h, w, D) with known D, got shape "
                f"{tuple(input_shape)}."
            )
        bound = 1.0 / math.sqrt(input_shape[-1])
        self.proj = keras.layers.Dense(
            self.scale[0] * self.scale[1] * self.num_channels,
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            dtype=self.dtype_policy,
            name="proj",
        )
        self.proj.build(input_shape)
        self.built = True

    def call(self, features):
        return pixel_shuffle(self.proj(features), self.scale)  # (B, h*sh, w*sw, C)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        sh, sw = self.scale
        return (b, None if h is None else h * sh, None if w is None else w * sw, self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, num_channels=self.num_channels)
        return config
