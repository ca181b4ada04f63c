"""Global Response Normalization (ConvNeXt V2)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mim")
class GlobalResponseNorm(keras.layers.Layer):
    """GRN of ConvNeXt V2 (Woo et al., CVPR 2023) on channels-last maps `(B, H, W, C)`:

        G = ||x||_2 over H, W (per sample, per channel);  N = G / (mean_C(G) + eps)
        y = gamma * (x * N) + beta + x

    with `gamma` and `beta` initialised to zero, so a new layer is the identity. In a
    sparse encoder hidden positions are zero when they arrive here, so `G` counts only
    the visible ones, as the official sparse GRN does; pass `active` to zero the output
    at hidden positions too (the official sparse layer has no output there). The norm of an
    all-zero channel gets a zero gradient (`torch.norm`'s subgradient; a plain `sqrt`
    gives NaN there, which FCMAE met on blank cells of digits).

    Args:
        epsilon: added to the channel mean of `G` (official: 1e-6).
        **kwargs: standard layer arguments.

    Examples:
        >>> import keras, numpy as np
        >>> grn = GlobalResponseNorm()
        >>> x = np.random.rand(2, 4, 4, 8).astype("float32")
        >>> bool(np.allclose(keras.ops.convert_to_numpy(grn(x)), x))  # gamma = beta = 0 at initialisation
        True
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="zeros", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        self.built = True

    def call(self, x, active=None):
        xf = ops.cast(x, "float32")
        s = ops.sum(ops.square(xf), axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
        # the L2 norm with a zero gradient where a channel is all zero (a blank visible region
        # of a sparse map): sqrt's gradient there is infinite and made the step NaN
        positive = s > 0
        g = ops.where(positive, ops.sqrt(ops.where(positive, s, 1.0)), 0.0)
        n = g / (ops.mean(g, axis=-1, keepdims=True) + self.epsilon)
        y = ops.cast(self.gamma, "float32") * (xf * n) + ops.cast(self.beta, "float32") + xf
        y = ops.cast(y, x.dtype)
        return y if active is None else y * active

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
