"""The mini-PointNet that turns each local group of points into one token (Point-MAE's `Encoder`)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mim")
class PointGroupEmbedding(keras.layers.Layer):
    """Groups of points `(B, G, K, 3)` -> tokens `(B, G, embed_dim)`.

    Per point: Dense 128 -> BatchNorm -> ReLU -> Dense 256; max over the group's K points;
    that maximum joined to every point's 256 features (512); Dense 512 -> BatchNorm ->
    ReLU -> Dense `embed_dim`; max over the points again. The official code's 1x1
    `Conv1d`s are these Dense layers; its BatchNorm normalises each channel over all the
    points of all groups in the batch, as `BatchNormalization(axis=-1)` here. The token is
    the same for any order of the group's points.

    Args:
        embed_dim: token width (Point-MAE: 384).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(PointGroupEmbedding(32)(np.zeros((2, 8, 16, 3), "float32")).shape)
        (2, 8, 32)
    """

    def __init__(self, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        p = self.dtype_policy
        self.fc1 = keras.layers.Dense(128, dtype=p, name="fc1")
        self.bn1 = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype=p, name="bn1")
        self.fc2 = keras.layers.Dense(256, dtype=p, name="fc2")
        self.fc3 = keras.layers.Dense(512, dtype=p, name="fc3")
        self.bn2 = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype=p, name="bn2")
        self.fc4 = keras.layers.Dense(self.embed_dim, dtype=p, name="fc4")

    def build(self, input_shape):
        shape = tuple(input_shape[:-1])
        self.fc1.build(shape + (3,))
        self.bn1.build(shape + (128,))
        self.fc2.build(shape + (128,))
        self.fc3.build(shape + (512,))
        self.bn2.build(shape + (512,))
        self.fc4.build(shape + (512,))

    def call(self, groups, training=None):
        x = self.fc2(ops.relu(self.bn1(self.fc1(groups), training=training)))  # (B, G, K, 256)
        pooled = ops.max(x, axis=2, keepdims=True)  # (B, G, 1, 256)
        x = ops.concatenate([ops.broadcast_to(pooled, ops.shape(x)), x], axis=-1)  # (B, G, K, 512)
        x = self.fc4(ops.relu(self.bn2(self.fc3(x), training=training)))  # (B, G, K, D)
        return ops.max(x, axis=2)  # (B, G, D)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.embed_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(embed_dim=self.embed_dim)
        return config
