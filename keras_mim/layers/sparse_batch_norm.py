"""Batch normalisation over visible positions only ("sparse BN" of SparK)."""

import keras
from keras import ops

from keras_mim.layers.sparse_ops import active_like, masked_moments


@keras.saving.register_keras_serializable(package="keras_mim")
class SparseBatchNormalization(keras.layers.Layer):
    """Wraps a `keras.layers.BatchNormalization` (channels last) and applies it to a
    sparse feature map: in training, the batch statistics are the mean and variance
    over visible positions only (SparK's sparse BN: BN1d over the visible features),
    the wrapped layer's moving statistics are updated from them with its momentum, and
    the output is zero at hidden positions. At inference it uses the moving statistics.

    It owns no weights: `gamma`, `beta` and the moving statistics are the wrapped
    layer's, so a dense network and its sparse form share them (what SparK pretrains
    is the dense network's own batch norm).

    Args:
        layer: the `keras.layers.BatchNormalization` to wrap (axis -1).
        **kwargs: standard layer arguments.

    Examples:
        >>> import keras, numpy as np
        >>> bn = keras.layers.BatchNormalization()
        >>> sparse = SparseBatchNormalization(bn)
        >>> x = np.random.rand(2, 4, 4, 3).astype("float32")
        >>> active = np.ones((2, 4, 4, 1), "float32")
        >>> tuple(sparse(x, active, training=True).shape)
        (2, 4, 4, 3)
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.BatchNormalization):
            raise TypeError(f"`layer` must be a keras.layers.BatchNormalization, got {type(layer).__name__}.")
        if layer.axis not in (-1, 3):
            raise ValueError(f"`layer` {layer.name!r} normalises axis {layer.axis}; sparse batch norm needs "
                             "channels-last feature maps (axis -1).")
        self.layer = layer

    def build(self, x_shape, active_shape=None):
        if not self.layer.built:
            self.layer.build(x_shape)
        self.built = True

    def call(self, x, active=None, training=None):
        bn = self.layer
        active = active_like(active, x)
        if not (training and bn.trainable):
            y = bn(x, training=False)
            return y if active is None else y * active
        mean, var = masked_moments(x, active, axes=(0, 1, 2))  # (1, 1, 1, C) float32
        mean, var = ops.reshape(mean, (-1,)), ops.reshape(var, (-1,))
        m = bn.momentum
        bn.moving_mean.assign(ops.cast(bn.moving_mean * m + ops.cast(mean, bn.moving_mean.dtype) * (1 - m),
                                       bn.moving_mean.dtype))
        bn.moving_variance.assign(ops.cast(bn.moving_variance * m + ops.cast(var, bn.moving_variance.dtype) * (1 - m),
                                           bn.moving_variance.dtype))
        y = (ops.cast(x, "float32") - mean) * ops.rsqrt(var + bn.epsilon)
        if bn.scale:
            y = y * ops.cast(bn.gamma, "float32")
        if bn.center:
            y = y + ops.cast(bn.beta, "float32")
        y = ops.cast(y, x.dtype)
        return y if active is None else y * active

    def compute_output_shape(self, x_shape, active_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer))
        return config
