"""The transformer feed-forward block."""

import keras


@keras.saving.register_keras_serializable(package="keras_mim")
class MLP(keras.layers.Layer):
    """Dense -> exact GELU -> Dense, hidden width `mlp_ratio * D`.

    Args:
        mlp_ratio: hidden width as a multiple of the token width (MAE: 4).
        dropout: dropout rate after each Dense.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(MLP()(np.zeros((2, 5, 16), "float32")).shape)
        (2, 5, 16)
    """

    def __init__(self, mlp_ratio=4.0, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = float(dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        hidden = int(dim * self.mlp_ratio)
        self.fc1 = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="fc1")
        self.fc1.build(input_shape)
        self.fc2 = keras.layers.Dense(dim, dtype=self.dtype_policy, name="fc2")
        self.fc2.build(tuple(input_shape[:-1]) + (hidden,))
        self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def call(self, x, training=None):
        x = keras.activations.gelu(self.fc1(x), approximate=False)
        if not self.dropout:  # rate 0: skip the no-op Dropout calls (as TransformerBlock)
            return self.fc2(x)
        x = self.drop(x, training=training)
        return self.drop(self.fc2(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mlp_ratio=self.mlp_ratio, dropout=self.dropout)
        return config
