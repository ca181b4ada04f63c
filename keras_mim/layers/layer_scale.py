"""Per-channel learnable scaling of a residual branch (CaiT)."""

import keras


@keras.saving.register_keras_serializable(package="keras_mim")
class LayerScale(keras.layers.Layer):
    """Multiplies tokens by a learned per-channel vector initialised to `init_value`.

    Args:
        init_value: initial scale (e.g. 1e-5 or 0.1).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> import keras, numpy as np
        >>> out = LayerScale(0.1)(np.ones((1, 2, 4), "float32"))
        >>> [round(float(v), 3) for v in keras.ops.convert_to_numpy(out)[0, 0]]
        [0.1, 0.1, 0.1, 0.1]
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            name="gamma",
        )

    def call(self, x):
        return x * self.gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(init_value=self.init_value)
        return config
