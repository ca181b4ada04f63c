"""Layer normalisation over the last axis, with a formulation XLA:CPU differentiates fast."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mim")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` (same weights `gamma` / `beta`, same config)
    that computes the statistics in float32 and, on JAX, as

        xc = x - mean(x);  y = xc * rsqrt(mean(xc ** 2) + epsilon) * gamma + beta

    sharing the centred tensor between the variance and the output. Keras' generic
    formulation (`jnp.var`, then `x * inv + (beta - mean * inv)`) is the same function
    but its backward pass compiles badly on XLA:CPU: in a ViT-Ti-shaped MAE training
    step (JAX jit, 2 CPU cores, batch 64 x 49 tokens) the 30 norms cost 1.6 s of a 3.0 s
    step with Keras' form and 0.6 s written this way (step 2.0 s; identity norms 1.4 s;
    `benchmarks/layer_norm_speed.py`). TensorFlow and PyTorch keep Keras' own path
    (`tf.nn.moments` / `torch.nn.functional.layer_norm`), which is faster there (on
    TensorFlow + XLA the shared form measured 1.7 s against 1.0 s per step).

    Args:
        epsilon: added to the variance (ViT: 1e-6).
        axis: must be -1 (the token width), the only axis the models normalise.
        **kwargs: other `keras.layers.LayerNormalization` arguments (`center`,
            `scale`, initializers, name, dtype).

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((3,)), LayerNorm(epsilon=1e-6)])
        >>> y = model.predict(np.array([[1.0, 2.0, 3.0]], "float32"), verbose=0)
        >>> print(np.round(y, 3))
        [[-1.225  0.     1.225]]
    """

    def __init__(self, epsilon=1e-6, axis=-1, **kwargs):
        if axis not in (-1, [-1], (-1,)):
            raise ValueError(f"`axis` must be -1 (the last axis); got {axis!r}.")
        super().__init__(axis=-1, epsilon=epsilon, **kwargs)

    def call(self, inputs):
        if keras.backend.backend() != "jax":
            return super().call(inputs)
        x = ops.cast(inputs, "float32")
        xc = x - ops.mean(x, axis=-1, keepdims=True)
        y = xc * ops.rsqrt(ops.mean(ops.square(xc), axis=-1, keepdims=True) + self.epsilon)
        if self.scale:
            y = y * ops.cast(self.gamma, "float32")
        if self.center:
            y = y + ops.cast(self.beta, "float32")
        return ops.cast(y, self.compute_dtype)

    def get_config(self):
        return dict(super().get_config(), axis=-1)
