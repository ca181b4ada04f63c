"""Hiera's transformer block: pre-norm attention within mask units (or global), pooling at
stage transitions."""

import keras

from keras_mim.layers.drop_path import DropPath
from keras_mim.layers.hiera_ops import pool_first
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.mask_unit_attention import MaskUnitAttention
from keras_mim.layers.mlp import MLP
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class HieraBlock(keras.layers.Layer):
    """`x' = x + DropPath(Attn(LN(x)))`, `x'' = x' + DropPath(MLP(LN(x')))` on unrolled tokens.

    At a stage transition (`dim_out` differs from the input width) the residual is
    `pool(Dense(LN(x)))`: projected to `dim_out` and max-pooled by `q_stride` as the
    attention pools its queries (official `HieraBlock`).

    Args:
        dim_out: output width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / `dim_out`.
        drop_path: stochastic-depth rate of both branches.
        q_stride: flattened pooling stride (1: none).
        window_size: mask-unit size in tokens after pooling (flattened).
        use_mask_unit_attn: attention within mask units instead of global.
        norm_epsilon: LayerNorm epsilon (official 1e-6).
        seed: optional int seed of drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> block = HieraBlock(16, 2, q_stride=4, window_size=4, use_mask_unit_attn=True)
        >>> tuple(block(np.zeros((2, 64, 8), "float32")).shape)
        (2, 16, 16)
    """

    def __init__(self, dim_out, num_heads, mlp_ratio=4.0, drop_path=0.0, q_stride=1, window_size=0,
                 use_mask_unit_attn=False, norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dim_out = check_positive_int(dim_out, "dim_out")
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.drop_path = float(drop_path)
        self.q_stride = int(q_stride)
        self.window_size = int(window_size)
        self.use_mask_unit_attn = bool(use_mask_unit_attn)
        self.norm_epsilon = float(norm_epsilon)
        self.seed = seed
        p = self.dtype_policy
        self.norm1 = LayerNorm(epsilon=self.norm_epsilon, dtype=p, name="norm1")
        self.attn = MaskUnitAttention(self.dim_out, self.num_heads, self.q_stride, self.window_size,
                                      self.use_mask_unit_attn, dtype=p, name="attn")
        self.norm2 = LayerNorm(epsilon=self.norm_epsilon, dtype=p, name="norm2")
        self.mlp = MLP(self.mlp_ratio, dtype=p, name="mlp")
        self.drop_path1 = DropPath(self.drop_path, seed=seed, dtype=p, name="drop_path1")
        self.drop_path2 = DropPath(self.drop_path, seed=None if seed is None else seed + 1, dtype=p, name="drop_path2")
        self.proj = None

    def build(self, input_shape):
        dim = input_shape[-1]
        out_shape = (input_shape[0], None, self.dim_out)
        self.norm1.build(input_shape)
        self.attn.build(input_shape)
        if dim != self.dim_out:
            self.proj = keras.layers.Dense(self.dim_out, dtype=self.dtype_policy, name="proj")
            self.proj.build(input_shape)
        self.norm2.build(out_shape)
        self.mlp.build(out_shape)

    def call(self, x, training=None):
        x_norm = self.norm1(x)
        if self.proj is not None:
            x = pool_first(self.proj(x_norm), self.q_stride)
        y = self.attn(x_norm)
        x = x + (self.drop_path1(y, training=training) if self.drop_path else y)
        y = self.mlp(self.norm2(x))
        return x + (self.drop_path2(y, training=training) if self.drop_path else y)

    def compute_output_shape(self, input_shape):
        return self.attn.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dim_out=self.dim_out, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                      drop_path=self.drop_path, q_stride=self.q_stride, window_size=self.window_size,
                      use_mask_unit_attn=self.use_mask_unit_attn, norm_epsilon=self.norm_epsilon, seed=self.seed)
        return config
