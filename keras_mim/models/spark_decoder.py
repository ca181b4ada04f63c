"""SparK's light hierarchical decoder."""

import math

import keras

from keras_mim.layers.unet_block import UNetBlock


@keras.saving.register_keras_serializable(package="keras_mim")
class SparKDecoder(keras.layers.Layer):
    """The UNet-style light decoder of SparK (official `decoder.LightDecoder`): from the
    coarsest (stride-`up_sample_ratio`) map, log2(ratio) `UNetBlock`s each double the
    resolution and halve the width (`width`, `width / 2`, ...); before block `i` the
    densified encoder feature of that scale, if any, is added; a 1x1 convolution maps
    the full-resolution map to pixels.

    `call(features)` takes a list, coarsest first, one entry per scale from stride
    `up_sample_ratio` down (None where the encoder has no feature), entry `i` of width
    `width / 2**i`.

    Args:
        up_sample_ratio: total stride to undo (32), a power of two.
        width: width of the coarsest scale (official 768).
        out_channels: pixel channels predicted.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> decoder = SparKDecoder(32, width=64, out_channels=3)
        >>> tuple(decoder([np.zeros((1, 2, 2, 64), "float32"), np.zeros((1, 4, 4, 32), "float32")]).shape)
        (1, 64, 64, 3)
    """

    def __init__(self, up_sample_ratio=32, width=768, out_channels=3, **kwargs):
        super().__init__(**kwargs)
        n = round(math.log2(up_sample_ratio))
        if up_sample_ratio < 2 or 2 ** n != up_sample_ratio:
            raise ValueError(f"`up_sample_ratio` must be a power of two, got {up_sample_ratio!r}.")
        if width % 2 ** n:
            raise ValueError(f"`width` must be divisible by {2 ** n} (it halves {n} times), got {width!r}.")
        self.up_sample_ratio, self.width, self.out_channels = int(up_sample_ratio), int(width), int(out_channels)
        self.channels = [self.width // 2 ** i for i in range(n + 1)]
        p = self.dtype_policy
        self.blocks = [UNetBlock(cin, cout, dtype=p, name=f"block_{i}")
                       for i, (cin, cout) in enumerate(zip(self.channels[:-1], self.channels[1:]))]
        self.proj = keras.layers.Conv2D(self.out_channels, 1, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=0.02), dtype=p, name="proj")

    def build(self, features_shape):
        """Build from the coarsest map's shape `(B, h, w, width)` (or the list of shapes)."""
        coarse = features_shape[0] if isinstance(features_shape[0], (list, tuple)) else features_shape
        b, h, w = coarse[:3]
        for i, block in enumerate(self.blocks):
            block.build((b, h * 2 ** i, w * 2 ** i, self.channels[i]))
        self.proj.build((b, h * 2 ** len(self.blocks), w * 2 ** len(self.blocks), self.channels[-1]))
        self.built = True

    def call(self, features, training=None):
        x = 0
        for i, block in enumerate(self.blocks):
            if i < len(features) and features[i] is not None:
                x = x + features[i]
            x = block(x, training=training)
        return self.proj(x)

    def get_config(self):
        config = super().get_config()
        config.update(up_sample_ratio=self.up_sample_ratio, width=self.width, out_channels=self.out_channels)
        return config
