"""The ConvNeXt V2 block, dense or sparse."""

import keras

from keras_mim.layers.drop_path import DropPath
from keras_mim.layers.global_response_norm import GlobalResponseNorm
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.sparse_ops import apply_active


def conv_init():
    """ConvNeXt's initialiser of convolutions and linear layers: truncated normal, std 0.02."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="keras_mim")
class ConvNeXtBlock(keras.layers.Layer):
    """ConvNeXt V2 block (official `convnextv2.Block`), channels last:

        x + DropPath(Dense(GRN(GELU(Dense_4x(LN(DWConv7x7(x)))))))

    Called with `active` (the visible map `(B, H, W, 1)` at this block's resolution,
    1 = visible), it is the block of the sparse encoder: hidden positions are zeroed
    after the depthwise convolution, the norm and the expansion, so the GRN statistics
    count visible positions only, and the branch is zeroed at hidden positions before
    the residual sum (the official sparse block has no values there at all).

    Args:
        dim: channels.
        drop_path_rate: stochastic depth of the residual branch.
        mlp_ratio: expansion of the pointwise MLP (official 4).
        kernel_size: depthwise kernel (official 7).
        norm_epsilon: LayerNorm epsilon (official 1e-6).
        seed: optional int seed of drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> block = ConvNeXtBlock(16)
        >>> tuple(block(np.zeros((2, 8, 8, 16), "float32")).shape)
        (2, 8, 8, 16)
    """

    def __init__(self, dim, drop_path_rate=0.0, mlp_ratio=4, kernel_size=7, norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mlp_ratio, self.kernel_size = int(dim), int(mlp_ratio), int(kernel_size)
        self.drop_path_rate, self.norm_epsilon, self.seed = float(drop_path_rate), float(norm_epsilon), seed
        p = self.dtype_policy
        self.dwconv = keras.layers.DepthwiseConv2D(self.kernel_size, padding="same", depthwise_initializer=conv_init(),
                                                   dtype=p, name="dwconv")
        self.norm = LayerNorm(epsilon=self.norm_epsilon, dtype=p, name="norm")
        self.pwconv1 = keras.layers.Dense(self.mlp_ratio * self.dim, kernel_initializer=conv_init(), dtype=p,
                                          name="pwconv1")
        self.grn = GlobalResponseNorm(dtype=p, name="grn")
        self.pwconv2 = keras.layers.Dense(self.dim, kernel_initializer=conv_init(), dtype=p, name="pwconv2")
        self.drop_path = DropPath(self.drop_path_rate, seed=seed, dtype=p, name="drop_path")

    def build(self, x_shape, active_shape=None):
        hidden = tuple(x_shape[:-1]) + (self.mlp_ratio * self.dim,)
        self.dwconv.build(x_shape)
        self.norm.build(x_shape)
        self.pwconv1.build(x_shape)
        self.grn.build(hidden)
        self.pwconv2.build(hidden)
        self.built = True

    def call(self, x, active=None, training=None):
        y = apply_active(self.dwconv(x), active)  # (B, H, W, C)
        y = apply_active(self.norm(y), active)
        y = apply_active(keras.activations.gelu(self.pwconv1(y), approximate=False), active)  # (B, H, W, 4C)
        y = self.grn(y, active)
        y = apply_active(self.pwconv2(y), active)
        return x + self.drop_path(y, training=training)

    def compute_output_shape(self, x_shape, active_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, drop_path_rate=self.drop_path_rate, mlp_ratio=self.mlp_ratio,
                      kernel_size=self.kernel_size, norm_epsilon=self.norm_epsilon, seed=self.seed)
        return config
