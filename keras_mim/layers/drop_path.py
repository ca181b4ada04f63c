"""Stochastic depth: drop a residual branch per sample."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mim")
class DropPath(keras.layers.Layer):
    """Zeroes the whole input of a sample with probability `rate` during training,
    scaling kept samples by `1 / (1 - rate)`; identity at inference.

    Args:
        rate: drop probability in [0, 1).
        seed: optional int for repeatable drops.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(DropPath(0.1, seed=0)(np.ones((4, 3, 8), "float32"), training=True).shape)
        (4, 3, 8)
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1), got {rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # no weights

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        return x * ops.cast(noise < keep, x.dtype) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
