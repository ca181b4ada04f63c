"""SparK's UNet decoder block."""

import keras


@keras.saving.register_keras_serializable(package="keras_mim")
class UNetBlock(keras.layers.Layer):
    """2x upsampling block of SparK's light decoder (official `decoder.UNetBlock`):
    4x4 stride-2 transposed convolution, then two 3x3 convolutions (no bias) each
    followed by batch norm, ReLU6 after the first.

    Args:
        in_channels: channels in (the transposed convolution keeps them).
        out_channels: channels out.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(UNetBlock(16, 8)(np.zeros((2, 4, 4, 16), "float32")).shape)
        (2, 8, 8, 8)
    """

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        p = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.up_sample = keras.layers.Conv2DTranspose(self.in_channels, 4, strides=2, padding="same",
                                                      kernel_initializer=init, dtype=p, name="up_sample")
        self.conv1 = keras.layers.Conv2D(self.in_channels, 3, padding="same", use_bias=False, kernel_initializer=init,
                                         dtype=p, name="conv1")
        self.bn1 = keras.layers.BatchNormalization(dtype=p, name="bn1")
        self.conv2 = keras.layers.Conv2D(self.out_channels, 3, padding="same", use_bias=False, kernel_initializer=init,
                                         dtype=p, name="conv2")
        self.bn2 = keras.layers.BatchNormalization(dtype=p, name="bn2")

    def build(self, input_shape):
        b, h, w, _ = input_shape
        up = (b, None if h is None else 2 * h, None if w is None else 2 * w, self.in_channels)
        self.up_sample.build(input_shape)
        self.conv1.build(up)
        self.bn1.build(up)
        self.conv2.build(up)
        self.bn2.build(up[:-1] + (self.out_channels,))
        self.built = True

    def call(self, x, training=None):
        x = self.up_sample(x)
        x = keras.ops.relu6(self.bn1(self.conv1(x), training=training))
        return self.bn2(self.conv2(x), training=training)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(in_channels=self.in_channels, out_channels=self.out_channels)
        return config
