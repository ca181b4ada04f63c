"""The post-norm shifted-window block of Swin Transformer V2 ("cr"), Audio-MAE's decoder block."""

import keras

from keras_mim.layers.drop_path import DropPath
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.mlp import MLP
from keras_mim.layers.window_attention import WindowAttention


@keras.saving.register_keras_serializable(package="keras_mim")
class WindowTransformerBlock(keras.layers.Layer):
    """`x + DropPath(LN(WindowAttn(x)))`, then `x + DropPath(LN(MLP(x)))` on a 2D grid.

    Post-norm residual branches (the norm after the branch, Swin V2) around
    `WindowAttention`: tokens attend only inside their (shifted) window, so a token's
    output depends on the tokens of its window alone. Audio-MAE's decoder stacks 16 of
    them on the 64 x 8 spectrogram grid, 4 x 4 windows, shifted by (2, 0) in every
    second block.

    Args:
        num_heads: attention heads.
        grid_shape: `(T, F)` token grid.
        window_size: `(wt, wf)` window in tokens.
        shift_size: `(st, sf)` cyclic shift of the windows.
        mlp_ratio: MLP hidden width / token width.
        qkv_bias: bias on the qkv projection.
        drop_path: stochastic-depth rate of both branches.
        norm_epsilon: LayerNorm epsilon.
        meta_hidden_dim: hidden width of the position-bias MLP.
        meta_dropout: dropout inside the position-bias MLP.
        seed: optional int seed of drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> block = WindowTransformerBlock(2, grid_shape=(8, 4), window_size=(4, 4), shift_size=(2, 0))
        >>> tuple(block(np.zeros((2, 32, 16), "float32")).shape)
        (2, 32, 16)
    """

    def __init__(self, num_heads, grid_shape, window_size=(4, 4), shift_size=(0, 0), mlp_ratio=4.0, qkv_bias=True,
                 drop_path=0.0, norm_epsilon=1e-6, meta_hidden_dim=384, meta_dropout=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.drop_path = float(drop_path)
        self.norm_epsilon = float(norm_epsilon)
        self.seed = seed
        p = self.dtype_policy
        self.attn = WindowAttention(num_heads, grid_shape, window_size, shift_size, qkv_bias=qkv_bias,
                                    meta_hidden_dim=meta_hidden_dim, meta_dropout=meta_dropout, dtype=p, name="attn")
        self.norm1 = LayerNorm(epsilon=norm_epsilon, dtype=p, name="norm1")
        self.mlp = MLP(mlp_ratio, dtype=p, name="mlp")
        self.norm2 = LayerNorm(epsilon=norm_epsilon, dtype=p, name="norm2")
        self.drop_path1 = DropPath(drop_path, seed=seed, dtype=p, name="drop_path1")
        self.drop_path2 = DropPath(drop_path, seed=None if seed is None else seed + 1, dtype=p, name="drop_path2")

    def build(self, input_shape):
        for layer in (self.attn, self.norm1, self.mlp, self.norm2):
            layer.build(input_shape)

    def call(self, x, training=None):
        y = self.norm1(self.attn(x, training=training))
        x = x + (self.drop_path1(y, training=training) if self.drop_path else y)
        y = self.norm2(self.mlp(x, training=training))
        return x + (self.drop_path2(y, training=training) if self.drop_path else y)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads, grid_shape=self.attn.grid_shape, window_size=self.attn.window_size,
            shift_size=self.attn.shift_size, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
            drop_path=self.drop_path, norm_epsilon=self.norm_epsilon, meta_hidden_dim=self.attn.meta_hidden_dim,
            meta_dropout=self.attn.meta_dropout, seed=self.seed,
        )
        return config
